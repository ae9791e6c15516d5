"""``ingest file PATH``: trainer output files → runs. PATH is one file, or a folder searched recursively.

Formats, recognised by name and content:

* ``trainer_state.json`` (TRL / transformers Trainer; also any ``.json`` with a ``log_history`` list when
  given as the PATH itself) → ``ingest.trl_state``; per output folder only the copy with the most steps;
* verl's file logger: ``.jsonl`` / ``.ndjson`` (any name when given as PATH) whose first line starts
  ``{"step": N, "data": {`` → ``ingest.verl_jsonl``;
* ``.csv`` and ``.jsonl`` / ``.ndjson`` (long or wide form) → ``ingest.tabular``;
* verl console logs: text holding ``step:N - key:value`` lines (``.log``, ``.txt``, ``.out``, ``.err`` or no
  extension when found in a folder; any name when given as PATH) → ``ingest.verl_log``.

A file given as PATH in none of these formats is an ``IngestError`` naming it and the supported formats;
in a folder, other files are passed over. External ids are resolved absolute paths (``#run`` appended
for multi-run CSV/JSONL files; the output folder's ``trainer_state.json`` for Trainer states).
Options: ``verl_step_offset`` forces the step shift of verl logs (see ``ingest.verl_log``).

Failures stay with their file: in a folder a file that cannot be read (bad line, not UTF-8, unreadable,
a broken symlink, no data rows…) is skipped and named in ``failures`` with the reason, every other file is
read, and the sync engine then fails the job (``fail_fast``: stop at the first bad file, as before). A file
with no data rows (0 bytes, a CSV header alone, only blank lines, an empty ``log_history``) is such a
failure, "no data rows in FILE", unless ``allow_empty``.

Files are tailed (``ingest.tailing``): an unchanged file is not opened, a grown one is parsed from where
the last sync stopped, a rewritten one is read afresh — as a new launch, a run of its own, when it was
restarted from the start. What runs are called (blank names, names two files share) and launches:
``ingest.file_runs``.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from db.errors import RecordError
from db.limits import check_run
from db.records import FileState, RunData
from ingest.base import Source, Watermarks
from ingest.errors import IngestError
from ingest.file_runs import as_launch, launch_of, named, refuse_repeats, shared_names, told_apart
from ingest.registry import FAIL_FAST, Option, SourceKind, boolean, integer, register
from ingest.tailing import new_state, plan
from ingest.textfile import SETTLE_SECONDS, UTF16_BOMS
from ingest.trl_state import FILE_NAME, latest_states, parse_trainer_state
from ingest.verl_jsonl import is_verl_file_log, read_verl_jsonl
from ingest.verl_log import is_step_head, read_verl_log

SUPPORTED = ("verl console log (lines 'step:N - key:value - …'), verl file logger (.jsonl, lines "
             "{\"step\": N, \"data\": {…}}), TRL trainer_state.json (log_history), "
             ".csv and .jsonl/.ndjson (long: run,key,step,value; wide: step + one column per key)")
TABULAR_SUFFIXES = (".csv", ".jsonl", ".ndjson")
LOG_SUFFIXES = ("", ".log", ".txt", ".out", ".err")
_SNIFF_CHUNK = 1 << 20


@dataclass(frozen=True)
class Detected:
    path: Path
    fmt: str  # verl_log | verl_jsonl | trainer_state | tabular | empty


def _is_verl_log(path: Path) -> bool:
    """Look for a verl step line, 1 MiB at a time, checking the start of every line (linear in the file);
    binary files (NUL bytes in the first KiB) are not. (Real console logs can hold stray NUL bytes further
    in: only the first KiB decides.)"""
    try:
        with path.open("rb") as raw:
            utf16 = raw.read(2) in UTF16_BOMS
            raw.seek(0)
            fh = io.BytesIO(raw.read(_SNIFF_CHUNK).decode("utf-16", "replace").encode()) if utf16 else raw
            rest = b""
            first = True
            while chunk := fh.read(_SNIFF_CHUNK):
                if first and b"\0" in chunk[:1024]:
                    return False
                first = False
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()[:1024]  # the start of an unfinished line is enough to recognise it
                if any(b"step:" in ln[:1024] and is_step_head(ln[:1024].decode("utf-8", "replace"))
                       for ln in lines):
                    return True
            return bool(rest) and is_step_head(rest.decode("utf-8", "replace"))
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _has_log_history(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            doc = json.load(fh)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("log_history"), list)


def detect(path: Path, *, explicit: bool, known: FileState | None = None) -> str | None:
    """The format of ``path``; ``explicit`` (the user named this file) also sniffs unusual names. ``known``:
    what an earlier sync read of it (an unchanged verl log is not sniffed again)."""
    suffix = path.suffix.lower()
    if path.name == FILE_NAME or (explicit and suffix == ".json" and _has_log_history(path)):
        return "trainer_state"
    was = known.parser_state.get("format") if known is not None else None  # known files are not sniffed again
    if was == "verl_jsonl" or (was in (None, "empty") and (explicit or suffix in (".jsonl", ".ndjson"))
                               and is_verl_file_log(path)):
        return "verl_jsonl"
    if suffix in TABULAR_SUFFIXES:
        return "tabular"
    if path.name.startswith("events.out.tfevents."):
        return None
    if known is not None and known.parser_state.get("format") == "verl_log":
        return "verl_log"
    if (explicit or suffix in LOG_SUFFIXES) and _is_verl_log(path):
        return "verl_log"
    return None


def _was_verl_jsonl(known: FileState | None) -> bool:
    """An earlier sync read this file as verl's file logger (emptied by a resuming run, it stays one)."""
    return known is not None and known.parser_state.get("format") == "verl_jsonl"


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:  # Python 3.11 raises RuntimeError on a symlink loop
        raise IngestError(f"{path}: cannot resolve the path ({_why(exc)})") from None


def _why(exc: BaseException) -> str:
    if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == 40:
        return "a symlink loop"
    return getattr(exc, "strerror", None) or str(exc)


_WANTED = (*TABULAR_SUFFIXES, *LOG_SUFFIXES, ".json")


def discover(root: Path, known: Mapping[str, FileState] | None = None) -> tuple[list[Detected], list[str]]:
    """Recognised files under ``root`` (or ``root`` itself), sorted by path, hidden folders skipped; and the
    files that look like ours but cannot be read (broken symlinks, symlink loops, unreadable), with why."""
    known = known or {}
    if not root.exists():
        if root.is_symlink():
            raise IngestError(f"{root}: a broken symlink or a symlink loop")
        raise IngestError(f"{root}: no such file or folder")
    if not root.is_file() and not root.is_dir():  # a FIFO, a device (/dev/zero), a socket: never opened
        raise IngestError(f"{root}: not a regular file (a FIFO, device or socket); ingest file reads regular files "
                          "and folders")
    if root.is_file():
        path = _resolve(root)
        try:
            empty = path.stat().st_size == 0
        except OSError as exc:
            raise IngestError(f"{root}: cannot read ({_why(exc)})") from None
        before = known.get(str(path))
        fmt = "empty" if empty and not _was_verl_jsonl(before) else detect(path, explicit=True, known=before)
        if fmt is None and path.suffix.lower() in LOG_SUFFIXES:
            raise IngestError(f"{root}: unknown file format: no verl 'step:N - key:value' line (yet: a verl log "
                              f"whose training has not started is read once it has); supported: {SUPPORTED}")
        if fmt is None:
            raise IngestError(f"{root}: unknown file format; supported: {SUPPORTED}")
        return [Detected(path, fmt)], []
    if not os.access(root, os.R_OK | os.X_OK):
        raise IngestError(f"{root}: cannot read the folder (permission denied)")
    found, problems = [], []
    for p in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        wanted = p.name == FILE_NAME or p.suffix.lower() in _WANTED
        try:
            is_file = p.is_file()
        except OSError as exc:
            is_file = False
            if wanted:
                problems.append(f"{p}: {_why(exc)}")
                continue
        if not is_file:
            if wanted and p.is_symlink() and not p.exists():
                problems.append(f"{p}: a broken symlink or a symlink loop")
            elif wanted and p.exists() and not p.is_dir():
                problems.append(f"{p}: not a regular file (a FIFO, device or socket)")
            continue
        try:
            path = _resolve(p)
            fmt = detect(path, explicit=False, known=known.get(str(path)))
        except IngestError as exc:
            if wanted:
                problems.append(str(exc))
            continue
        if fmt is not None:
            found.append(Detected(path, fmt))
    states = set(latest_states([d.path for d in found if d.fmt == "trainer_state"]))
    return [d for d in found if d.fmt != "trainer_state" or d.path in states], problems


@dataclass(frozen=True)
class FileRead:
    """One read of one file: its runs (the last one carries ``state``), or ``state`` alone."""

    runs: list[RunData]
    state: FileState
    rows: int
    notices: list[str]


def read_file(found: Detected, *, verl_step_offset: int | None = None,
              known: FileState | None = None) -> FileRead | None:
    """The runs of one recognised file: only what was appended since ``known`` (None: unchanged)."""
    path = found.path
    try:
        st = path.stat()
        p = plan(path, st, known)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({_why(exc)})") from None
    if p.mode == "unchanged":
        return None
    notices = [f"{path}: {p.why}: read afresh"] if p.why else []
    resume = (p.offset, p.state) if p.mode == "tail" and p.state else None
    settled = time.time() - st.st_mtime >= SETTLE_SECONDS  # a writer still writing has moved on by now
    parser: dict[str, Any] | None = None
    if found.fmt == "verl_log":
        v = read_verl_log(path, step_offset=verl_step_offset, resume=resume, end=st.st_size, settled=settled)
        runs, offset, parser, rows = ([v.run] if v.run else []), v.offset, v.state, 1
        notices += [] if v.run else list(v.notices)  # a run carries its own notices
    elif found.fmt == "verl_jsonl":
        earlier = known.parser_state.get("parser") if _was_verl_jsonl(known) else None  # type: ignore[union-attr]
        j = read_verl_jsonl(path, resume, end=st.st_size, rewritten=(p.why, earlier) if p.why else None)
        runs, offset, parser, rows = ([j.run] if j.run else []), j.offset, j.state, j.rows
        notices += [] if j.run else list(j.notices)  # a run carries its own notices
        rows = rows or int(earlier is not None)  # emptied by a resuming run: not an empty file
    elif found.fmt == "trainer_state":
        run = parse_trainer_state(path)
        offset, rows = st.st_size, sum(len(s) for s in run.series)
        runs = [replace(run, origin=str(path))] if rows else []
    elif found.fmt == "tabular":
        from ingest.tabular import read_table_from  # pandas: imported when a table is read

        t = read_table_from(path, resume, end=st.st_size, settled=settled)
        runs, offset, parser, rows = t.runs, t.offset, t.state, t.rows
        notices += t.notices
    else:  # empty
        runs, offset, rows = [], 0, 0
    if resume is not None:
        rows = max(rows, 1)  # a tail read of a file that had rows before is not an empty file
    if found.fmt == "verl_jsonl":  # verl's file logger reopens its file with "wb" when the run resumes: same run
        launch, first, new = 1, None, False
    else:
        launch, first, new = launch_of(known, runs, rewritten=p.mode == "fresh" and bool(p.why), full=resume is None)
    if launch > 1:
        runs = [as_launch(run, launch, p.why if new else None) for run in runs]
    runs = [named(run, path) for run in runs]
    for run in runs:
        check_run(run)
    extra = {"launch": launch, "first_points": first}
    return FileRead(runs, new_state(path, st, offset, parser, found.fmt, settled, extra), rows, notices)


def _empty_why(found: Detected) -> str:
    if found.fmt == "empty" or found.path.stat().st_size == 0:
        return "the file is empty"
    if found.fmt == "trainer_state":
        return "log_history is empty"
    if found.path.suffix.lower() == ".csv":
        return "a header and no rows, or no whole line"
    return "only blank lines, or no whole line"


class FileSource(Source):
    """``ingest file PATH``: verl console logs and file-logger files, trainer_state.json, CSV and JSONL files."""

    kind = "file"
    tails_files = True
    part = "file"

    def __init__(self, uri: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(uri, options)
        self.allow_empty = False  # a file with no data rows is not a failure
        self.strict = False  # a (run, key, step) given twice in a file is a failure, not a note
        self.unchanged = 0  # files not opened: unchanged since the last sync
        self._discovered: tuple[list[Detected], list[str]] | None = None

    def _found(self) -> tuple[list[Detected], list[str]]:
        if self._discovered is None:
            root = Path(self.uri).expanduser()
            found, problems = discover(root, self.known_files)
            if not found and not problems:
                raise IngestError(f"{root}: no recognised files inside; supported: {SUPPORTED}")
            self._discovered = found, problems
        return self._discovered

    def check(self) -> None:
        """The path exists and holds at least one recognised file; a single file can be opened."""
        found, _ = self._found()
        root = Path(self.uri).expanduser()
        if root.is_file():
            try:
                with found[0].path.open("rb"):
                    pass
            except OSError as exc:
                raise IngestError(f"{root}: cannot read ({_why(exc)})") from None

    def count_runs(self) -> int | None:
        found, _ = self._found()
        return None if any(d.fmt == "tabular" for d in found) else len(found)

    def _fail(self, why: str) -> None:
        if self.fail_fast or Path(self.uri).expanduser().is_file():  # a single file: its own error
            raise IngestError(why)
        self.failures.append(why)

    def iter_runs(self, watermarks: Watermarks) -> Iterator[RunData]:
        """The new points of every recognised file (unchanged files are not opened)."""
        offset = self.options.get("verl_step_offset")
        found, problems = self._found()
        root = Path(self.uri).expanduser()
        shared = shared_names(((d.path, d.fmt) for d in found), root) if root.is_dir() else {}
        for why in problems:
            self._fail(why)
        for d in found:
            try:
                read = read_file(d, verl_step_offset=None if offset is None else int(offset),
                                 known=self.known_files.get(str(d.path)))
                if read is not None and read.rows == 0 and not self.allow_empty:
                    raise IngestError(f"no data rows in {d.path} ({_empty_why(d)}); --allow-empty accepts "
                                      "empty files")
                if read is not None and self.strict:
                    refuse_repeats(read.runs)
            except (IngestError, RecordError) as exc:
                self._fail(str(exc))
                continue
            if read is None:
                self.unchanged += 1
                continue
            self.notices.extend(read.notices)
            if not read.runs:
                self.leftover_states.append(read.state)
                continue
            if d.path in shared:
                read = replace(read, runs=[told_apart(r, *shared[d.path]) for r in read.runs])
            *first, last = read.runs
            yield from first
            yield replace(last, file_states=(read.state,))


register(SourceKind(
    kind="file", build=FileSource,
    help="csv, jsonl, verl console log, TRL trainer_state.json (a file or a folder)",
    uri_help="a file, or a folder searched recursively", uri_metavar="PATH", uri_is_path=True,
    options=(
        Option("verl_step_offset", integer, "the step shift of verl console logs (default: detected; see ingest.verl_log)"),
        FAIL_FAST,
        Option("allow_empty", boolean, "a file with no data rows is not an error", flag="--allow-empty",
               switch=True, remembered=False),
        Option("strict", boolean, "refuse a file that gives one (run, key, step) twice instead of keeping the "
               "latest and noting it on the run", flag="--strict", switch=True, remembered=False),
    )))
