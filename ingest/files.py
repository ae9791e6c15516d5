"""``ingest file PATH``: trainer output files → runs. PATH is one file, or a folder searched recursively.

Formats, recognised by name and content:

* ``trainer_state.json`` (TRL / transformers Trainer; also any ``.json`` with a ``log_history`` list when
  given as the PATH itself) → ``ingest.trl_state``; per output folder only the copy with the most steps;
* ``.csv`` and ``.jsonl`` / ``.ndjson`` (long or wide form) → ``ingest.tabular``;
* verl console logs: text holding ``step:N - key:value`` lines (``.log``, ``.txt``, ``.out``, ``.err`` or no
  extension when found in a folder; any name when given as PATH) → ``ingest.verl_log``.

A file given as PATH in none of these formats is an ``IngestError`` naming it and the supported formats;
in a folder, other files are passed over. External ids are resolved absolute paths (``#run`` appended
for multi-run CSV/JSONL files; the output folder's ``trainer_state.json`` for Trainer states).
Options: ``verl_step_offset`` forces the step shift of verl logs (see ``ingest.verl_log``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from db.records import RunData
from ingest.base import Source, Watermarks
from ingest.errors import IngestError
from ingest.tabular import read_table
from ingest.trl_state import FILE_NAME, latest_states, parse_trainer_state
from ingest.verl_log import looks_like_verl_log, parse_verl_log

SUPPORTED = ("verl console log (lines 'step:N - key:value - …'), TRL trainer_state.json (log_history), "
             ".csv and .jsonl/.ndjson (long: run,key,step,value; wide: step + one column per key)")
TABULAR_SUFFIXES = (".csv", ".jsonl", ".ndjson")
LOG_SUFFIXES = ("", ".log", ".txt", ".out", ".err")
_SNIFF_CHUNK = 1 << 20


@dataclass(frozen=True)
class Detected:
    path: Path
    fmt: str  # verl_log | trainer_state | tabular


def _is_verl_log(path: Path) -> bool:
    """Scan the text for a verl step line, 1 MiB at a time; binary files (NUL bytes at the start) are not.

    (Real console logs can hold stray NUL bytes further in: only the first KiB decides.)
    """
    try:
        with path.open("rb") as fh:
            tail = b""
            while chunk := fh.read(_SNIFF_CHUNK):
                if not tail and b"\0" in chunk[:1024]:
                    return False
                text = (tail + chunk).decode("utf-8", errors="replace")
                if looks_like_verl_log(text):
                    return True
                tail = chunk[-4096:]
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return False


def _has_log_history(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            doc = json.load(fh)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("log_history"), list)


def detect(path: Path, *, explicit: bool) -> str | None:
    """The format of ``path``; ``explicit`` (the user named this file) also sniffs unusual names."""
    suffix = path.suffix.lower()
    if path.name == FILE_NAME or (explicit and suffix == ".json" and _has_log_history(path)):
        return "trainer_state"
    if suffix in TABULAR_SUFFIXES:
        return "tabular"
    if path.name.startswith("events.out.tfevents."):
        return None
    if (explicit or suffix in LOG_SUFFIXES) and _is_verl_log(path):
        return "verl_log"
    return None


def discover(root: Path) -> list[Detected]:
    """Recognised files under ``root`` (or ``root`` itself), sorted by path; hidden folders skipped."""
    if not root.exists():
        raise IngestError(f"{root}: no such file or folder")
    if root.is_file():
        fmt = detect(root, explicit=True)
        if fmt is None:
            raise IngestError(f"{root}: unknown file format; supported: {SUPPORTED}")
        return [Detected(root, fmt)]
    found = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        fmt = detect(p, explicit=False)
        if fmt is not None:
            found.append(Detected(p, fmt))
    states = set(latest_states([d.path for d in found if d.fmt == "trainer_state"]))
    return [d for d in found if d.fmt != "trainer_state" or d.path in states]


def read_file(found: Detected, *, verl_step_offset: int | None = None) -> list[RunData]:
    """The runs of one recognised file."""
    if found.fmt == "verl_log":
        return [parse_verl_log(found.path, step_offset=verl_step_offset)]
    if found.fmt == "trainer_state":
        return [parse_trainer_state(found.path)]
    return read_table(found.path)


class FileSource(Source):
    """``ingest file PATH``: verl console logs, trainer_state.json, CSV and JSONL files."""

    kind = "file"

    def _found(self) -> list[Detected]:
        root = Path(self.uri).expanduser()
        found = discover(root)
        if not found:
            raise IngestError(f"{root}: no recognised files inside; supported: {SUPPORTED}")
        return found

    def check(self) -> None:
        """The path exists and holds at least one recognised file."""
        self._found()

    def count_runs(self) -> int | None:
        found = self._found()
        return None if any(d.fmt == "tabular" for d in found) else len(found)

    def iter_runs(self, watermarks: Watermarks) -> Iterator[RunData]:
        """Every run of every recognised file (all points: the store keeps only new or changed ones)."""
        offset = self.options.get("verl_step_offset")
        for found in self._found():
            yield from read_file(found, verl_step_offset=None if offset is None else int(offset))
