"""TensorBoard event folders → one ``RunData`` per folder holding ``events.out.tfevents.*`` files.

The event files are read here, record by record (TFRecord framing: uint64 length, masked CRC-32C of
the length, the ``Event`` protobuf, masked CRC-32C of the data), with tensorboard's own protobufs and CRC:

* scalars come from ``simple_value`` summaries (PyTorch / tensorboardX / TF1 writers) and from 0-d
  numeric tensors of tags whose plugin is ``scalars`` (TF2 and ``tensorboard.summary.Writer``; the plugin
  metadata is written with a tag's first value only, so it is remembered per tag);
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

import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.util import tensor_util

from db.errors import RecordError
from db.limits import shown
from db.records import RunData, RunInfo, Series
from ingest.base import Source, Watermarks
from ingest.errors import IngestError
from ingest.registry import FAIL_FAST, SourceKind, register
from ingest.tailing import new_state, plan

EVENT_GLOB = "events.out.tfevents.*"
SCALARS_PLUGIN = "scalars"
_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class RecordScan:
    """What reading one event file found: complete records, and where a torn tail began (if any)."""

    records: tuple[bytes, ...]
    truncated_at: int | None = None
    end: int = 0  # byte offset after the last complete record


def read_records(path: Path, start: int = 0, end: int | None = None) -> RecordScan:
    """The complete TFRecord payloads of ``path`` from byte ``start`` (up to ``end``); a torn tail is
    reported, a bad CRC raised."""
    records: list[bytes] = []
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    size = os.fstat(fh.fileno()).st_size if end is None else end
    with fh:
        fh.seek(start)
        while True:
            offset = fh.tell()
            header = fh.read(min(_HEADER.size, max(size - offset, 0)))
            if not header:
                return RecordScan(tuple(records), None, offset)
            if len(header) < _HEADER.size:
                return RecordScan(tuple(records), offset, offset)
            length, length_crc = _HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                raise IngestError(f"{path}: corrupt event file: record at byte {offset} fails its length "
                                  "checksum (not a TensorBoard event file, or damaged)")
            if offset + _HEADER.size + length + _CRC.size > size:
                return RecordScan(tuple(records), offset, offset)
            data = fh.read(length)
            footer = fh.read(_CRC.size)
            if len(data) < length or len(footer) < _CRC.size:
                return RecordScan(tuple(records), offset, offset)
            if masked_crc32c(data) != _CRC.unpack(footer)[0]:
                raise IngestError(f"{path}: corrupt event file: record at byte {offset} fails its data checksum")
            records.append(data)


@dataclass
class _RunPoints:
    """Points of one run folder, gathered over its event files."""

    by_tag: dict[str, tuple[list[int], list[float], list[float]]] = field(default_factory=dict)
    plugins: dict[str, str] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)
    span: list[float] = field(default_factory=list)  # [first step, last step, first wall time] of the file read

    def add(self, tag: str, step: int, value: float, wall_time: float) -> None:
        if self.span:
            self.span[:2] = [min(self.span[0], step), max(self.span[1], step)]
        else:
            self.span[:] = [step, step, wall_time]
        steps, values, walls = self.by_tag.setdefault(tag, ([], [], []))
        steps.append(step)
        values.append(value)
        walls.append(wall_time)

    def add_event(self, event: event_pb2.Event) -> None:
        for v in event.summary.value:
            plugin = v.metadata.plugin_data.plugin_name  # written with a tag's first value only
            if plugin:
                self.plugins.setdefault(v.tag, plugin)
            kind = v.WhichOneof("value")
            if kind == "simple_value":
                self.add(v.tag, event.step, float(v.simple_value), event.wall_time)
            elif kind == "tensor" and self.plugins.get(v.tag, SCALARS_PLUGIN) == SCALARS_PLUGIN:
                value = _scalar(v.tensor)
                if value is None:
                    self.skipped.add(v.tag)
                else:
                    self.add(v.tag, event.step, value, event.wall_time)
            else:
                self.skipped.add(v.tag)


def _scalar(tensor: object) -> float | None:
    """The value of a 0-d (or one-element) numeric tensor proto; None for anything else."""
    try:
        arr = tensor_util.make_ndarray(tensor)
    except (ValueError, TypeError):
        return None
    if arr.size != 1 or arr.dtype.kind not in "fiub":
        return None
    return float(arr.reshape(()))


@dataclass(frozen=True)
class FolderRead:
    series: tuple[Series, ...]
    notes: tuple[str, ...]
    notices: tuple[str, ...]
    #: per file read: (its stat, offset after its last complete record, its parser state)
    files: tuple[tuple[Path, os.stat_result, int, dict[str, Any]], ...]


def read_event_files(files: list[Path], where: str) -> tuple[tuple[Series, ...], tuple[str, ...]]:
    """Scalars of the event files of one run folder, and notes on torn files and skipped tags."""
    read = read_folder([(p, p.stat(), 0, None) for p in files], where)
    return read.series, read.notes + read.notices


def read_folder(files: list[tuple[Path, os.stat_result, int, Mapping[str, Any] | None]], where: str) -> FolderRead:
    """Scalars of event files of one run folder, each from its offset with its saved state (plugins per tag,
    tags skipped), up to the size it had when looked at; notes on skipped tags, notices on torn files."""
    points = _RunPoints()
    notes: list[str] = []
    notices: list[str] = []
    out = []
    skipped_before: set[str] = set()
    for path, st, start, state in files:
        points.plugins.update((state or {}).get("plugins", {}))
        skipped_before |= set((state or {}).get("skipped", []))
        before = set(points.skipped)
        points.span = list((state or {}).get("span") or [])
        scan = read_records(path, start, st.st_size)
        for i, data in enumerate(scan.records):
            try:
                event = event_pb2.Event.FromString(data)
            except DecodeError:
                raise IngestError(f"{path}: corrupt event file: record {i} after byte {start} is not an Event "
                                  "protobuf") from None
            if event.HasField("summary"):
                points.add_event(event)
        if scan.truncated_at is not None:
            notices.append(f"{path}: truncated record at byte {scan.truncated_at} (a writer still running "
                           f"or killed): read the {len(scan.records)} complete records before it; the rest is "
                           "left for the next sync")
        file_skipped = sorted(set((state or {}).get("skipped", [])) | (points.skipped - before))
        out.append((path, st, scan.end, {"plugins": dict(points.plugins), "skipped": file_skipped[:100],
                                         "span": list(points.span)}))
    skipped = sorted(points.skipped - set(points.by_tag) - skipped_before)
    if skipped:
        notes.append(f"{len(skipped)} non-scalar tags skipped: {', '.join(skipped[:5])}"
                     + ("…" if len(skipped) > 5 else ""))
    series = tuple(Series.build(tag, s, np.asarray(v), w, where=where)
                   for tag, (s, v, w) in points.by_tag.items())
    return FolderRead(series, tuple(notes), tuple(notices), tuple(out))


def restart_note(spans: list[tuple[Path, list[float]]]) -> str | None:
    """A note when launches of the trainer (event files of one folder) log overlapping steps, naming the steps
    and the files; for those steps each keeps the value with the later wall time, i.e. the later launch's."""
    launches = sorted((sp[2], path, sp[0], sp[1]) for path, sp in spans if sp and len(sp) == 3)
    overlaps = []
    for (_, first, lo1, hi1), (_, later, lo2, hi2) in zip(launches, launches[1:], strict=False):
        lo, hi = max(lo1, lo2), min(hi1, hi2)
        if lo <= hi:
            steps = f"step {lo:.0f}" if lo == hi else f"steps {lo:.0f}–{hi:.0f}"
            overlaps.append(f"{steps} ({first.name} then {later.name})")
    if not overlaps:
        return None
    return (f"restarts: {len(launches)} launches of the trainer in this folder log the same steps — "
            + "; ".join(overlaps) + ": for those steps the later launch's values are kept")


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
