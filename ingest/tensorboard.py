"""TensorBoard event folders → one ``RunData`` per folder holding ``events.out.tfevents.*`` files.

The event files are read record by record with tensorboard's own protobufs and CRC
(``ingest.tensorboard_events``):

* scalars come from ``simple_value`` summaries and from 0-d numeric tensors of tags whose plugin is
  ``scalars``;
* every event file of a folder is merged into the folder's run (a restarted writer adds a file); a step
  written twice keeps the value with the later wall time — when launches overlap in steps, the later
  launch's values — and the overlap is noted on the run (which steps, which files);
* a file that ends inside a record (a writer still running, or killed) gives its complete records and a
  note; a complete record whose CRC does not match, or that does not decode, is an ``IngestError``
  naming the file and the byte offset.

The run name is the folder's path relative to the root given (the root's own name for event files
directly in it); the external id is the folder's resolved path.

Event files only grow: each file's read position (after its last complete record) and the plugin of every
tag seen are kept (``ingest.tailing``), so a sync reads only the records appended since; a folder with a
rewritten file is read afresh. A folder that cannot be read (a corrupt record) is skipped and named, the
other folders are read (``fail_fast``: stop at the first).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from db.errors import RecordError
from db.limits import shown
from db.records import RunData, RunInfo
from ingest.base import Source, Watermarks
from ingest.errors import IngestError
from ingest.registry import FAIL_FAST, SourceKind, register
from ingest.tailing import new_state, plan

EVENT_GLOB = "events.out.tfevents.*"


def find_run_folders(root: Path) -> list[Path]:
    """Every folder under ``root`` (``root`` included) holding event files, sorted."""
    if root.is_file():
        return [root.parent] if root.name.startswith("events.out.tfevents.") else []
    return sorted({p.parent for p in root.rglob(EVENT_GLOB) if p.is_file()})


def _run_name(folder: Path, root: Path) -> str:
    rel = folder.relative_to(root) if folder != root else Path(root.resolve().name)
    return rel.as_posix()


class TensorBoardSource(Source):
    """``ingest tensorboard DIR``: one run per folder holding ``events.out.tfevents.*`` files."""

    kind = "tensorboard"
    tails_files = True
    part = "run folder"

    def _root(self) -> Path:
        root = Path(self.uri).expanduser()
        if not root.exists():
            raise IngestError(f"{root}: no such folder (expected a TensorBoard log folder)")
        return root

    def _folders(self, root: Path) -> list[Path]:
        folders = find_run_folders(root)
        if not folders:
            raise IngestError(f"{root}: no TensorBoard event files (events.out.tfevents.*) found")
        return folders

    def check(self) -> None:
        """The folder exists and holds event files."""
        self._folders(self._root())

    def count_runs(self) -> int | None:
        return len(find_run_folders(self._root()))

    def iter_runs(self, watermarks: Watermarks) -> Iterator[RunData]:
        """Every run folder's new scalars: only records appended since the last sync (``known_files``)."""
        root = self._root()
        folders = self._folders(root)
        base = root if root.is_dir() else root.parent
        for folder in folders:
            try:
                data = self._read_folder(folder, _run_name(folder, base))
            except (IngestError, RecordError, OSError) as exc:
                why = str(exc) if not isinstance(exc, OSError) else f"{folder}: cannot read ({exc.strerror or exc})"
                if self.fail_fast:
                    raise IngestError(why) from None
                self.failures.append(why)
                continue
            if data is not None:
                yield data

    def _read_folder(self, folder: Path, name: str) -> RunData | None:
        files = sorted(p for p in folder.glob(EVENT_GLOB) if p.is_file())
        plans = []
        for p in files:
            resolved = p.resolve()
            st = resolved.stat()
            plans.append((resolved, st, plan(resolved, st, self.known_files.get(str(resolved)))))
        notices = []
        rewritten = [(p, pl.why) for p, _, pl in plans if pl.mode == "fresh" and pl.why]
        if rewritten:  # read the whole folder afresh: merging over files needs all their points
            notices.append(f"{rewritten[0][0]}: {rewritten[0][1]}: run {shown(name, 80)} read afresh")
            todo = [(p, st, 0, None) for p, st, _ in plans]
        else:
            todo = [(p, st, pl.offset, pl.state) for p, st, pl in plans if pl.mode != "unchanged"]
        if not todo:
            return None
        partial = not rewritten and any(pl.mode != "fresh" for _, _, pl in plans)
        from ingest.tensorboard_events import read_folder, restart_note  # protobuf: only when files are read

        read = read_folder(todo, f"{folder}, run {shown(name, 80)}")
        states = tuple(new_state(p, st, end, state, "tensorboard") for p, st, end, state in read.files)
        spans = {p: state.get("span") for p, _, _, state in read.files}
        spans |= {p: (pl.state or {}).get("span") for p, _, pl in plans if p not in spans}
        restart = restart_note(list(spans.items()))
        series = read.series
        if restart:  # the steps given twice are the launches' overlap, which the restart note explains
            series = tuple(replace(s, repeats=None) for s in series)
        info = RunInfo(external_id=str(folder.resolve()), name=name, params={"event_files": len(files)})
        return RunData(run=info, series=series, notes=(*read.notes, *([restart] if restart else [])),
                       origin=str(folder), partial=partial, notices=(*notices, *read.notices), file_states=states)


register(SourceKind(
    kind="tensorboard", build=TensorBoardSource, help="TensorBoard event folders (recursive)",
    uri_help="a folder of events.out.tfevents.* files (searched recursively)", uri_metavar="DIR", uri_is_path=True,
    options=(FAIL_FAST,)))
