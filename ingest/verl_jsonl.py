"""verl's file logger (``trainer.logger=[…,'file']``) → one ``RunData`` per file, tailed.

What verl writes (``verl/utils/tracking.py``, class ``FileLogger``): the file is
``$VERL_FILE_LOGGER_PATH``, by default ``<$VERL_FILE_LOGGER_ROOT or .>/<project_name>/<experiment_name>.jsonl``;
every ``Tracking.log(data, step)`` call appends one line ``{"step": N, "data": {key: value, …}}`` (orjson
with ``OPT_SERIALIZE_NUMPY``, so a NaN or ±inf value is written as ``null``; verl before January 2026 used
``json.dumps``, which writes ``NaN``/``Infinity``, through a buffered text file). The validation before
training is a line of its own (``step`` 0, or the resume step, only ``val-core/…`` keys); each training step
is one line. The logger opens its file with mode ``wb`` (``w`` before): a run resumed from a checkpoint
truncates the file and starts again at the resume step.

How it is read:

* Detection: the first line starts ``{"step": <integer>, "data": {`` (``is_verl_file_log``).
* The run: external id = the resolved path; name = the file's stem (the experiment); project = the name of
  the folder it is in (the project, in verl's default layout). The lines say nothing of the planned length or
  of the end of the run (``--planned-steps`` sets the length; the state stays ``unknown``).
* Values: JSON numbers are points; ``null`` is a missing value (NaN) at that step; any other value (text, a
  list, an object, true/false) is passed over and named in the run's notes (key, line, count). A line that is
  not JSON, not an object with an integer ``step`` ≥ 0 and an object ``data``, is an ``IngestError`` naming
  the file and the line. A step seen twice keeps the later line's values; steps that go back within the
  file are named in a note.
* Tailing (``ingest.tailing``): appended lines are read from the saved offset; an unterminated last line is
  taken when it is a whole object (and read again next time), else left for the next sync. A file that was
  rewritten — shorter than before, emptied, other first bytes: verl resuming — is read afresh: the stored
  points are kept (points at steps the new content logs take its values) and the run's notes say when the
  file was rewritten, where its new content starts and which steps the earlier content held. Those notes
  are carried in the read state, so later reads keep them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db.errors import RecordError
from db.limits import MAX_KEY_CHARS, MAX_STEP, check_name, clip, shown
from db.records import RunData, RunInfo, Series
from ingest.errors import IngestError
from ingest.textfile import LineReader

FORMAT = "verl_file_logger"
#: the start of a line written by verl's FileLogger: orjson writes it compact, json.dumps with spaces
_HEAD = re.compile(rb'^\s*\{\s*"step"\s*:\s*\d+\s*,\s*"data"\s*:\s*\{')
_SNIFF_BYTES = 4096
_MAX_HISTORY = 20


def is_verl_file_log(path: Path) -> bool:
    """True when the first non-blank line of ``path`` starts as verl's file logger writes its lines."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return False
    return _HEAD.match(head.lstrip(b"\r\n\t ")) is not None


@dataclass(frozen=True)
class VerlFileRead:
    """One read of a verl file-logger file: the run (None when there was no new line), the offset to go on
    from, the state to go on with, the lines read, and what to tell the user about this read."""

    run: RunData | None
    offset: int
    state: dict[str, Any]
    rows: int
    notices: tuple[str, ...]


@dataclass
class _Lines:
    """Points per key, and what was passed over, of the lines of one read."""

    by_key: dict[str, tuple[list[int], list[float], list[int]]] = field(default_factory=dict)
    other: dict[str, tuple[int, int, Any]] = field(default_factory=dict)  # key → (count, first line, value)
    extra_fields: dict[str, int] = field(default_factory=dict)  # top-level field → first line
    first_step: int | None = None
    max_step: int | None = None
    back: tuple[int, int, int] | None = None  # (line, step, the larger step before it)
    rows: int = 0

    def add_line(self, number: int, raw: bytes, where: str) -> None:
        at = f"{where}, line {number}"
        try:
            rec = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            msg = getattr(exc, "msg", None) or clip(str(exc), 120)
            raise IngestError(f"{at}: not valid JSON ({msg}); verl's file logger writes one "
                              '{"step": N, "data": {…}} object per line') from None
        if not isinstance(rec, dict) or "step" not in rec or not isinstance(rec.get("data"), dict):
            raise IngestError(f"{at}: expected an object with 'step' and 'data' (an object), as verl's file "
                              f"logger writes, got {shown(rec if not isinstance(rec, dict) else sorted(rec), 80)}")
        step = _step(rec["step"], at)
        for name in rec:
            if name not in ("step", "data"):
                self.extra_fields.setdefault(name, number)
        self.rows += 1
        if self.first_step is None:
            self.first_step = step
        if self.max_step is not None and step < self.max_step and self.back is None:
            self.back = (number, step, self.max_step)
        self.max_step = step if self.max_step is None else max(self.max_step, step)
        for key, value in rec["data"].items():
            if type(value) is float or type(value) is int:
                v = float(value)
            elif value is None:
                v = math.nan  # how orjson writes NaN and ±inf
            else:
                count, line, example = self.other.get(key, (0, number, value))
                self.other[key] = (count + 1, line, example)
                continue
            entry = self.by_key.get(key)
            if entry is None:
                try:
                    check_name(key, "metric key", at, MAX_KEY_CHARS)
                except RecordError as exc:
                    raise IngestError(str(exc)) from None
                entry = self.by_key[key] = ([], [], [])
            entry[0].append(step)
            entry[1].append(v)
            entry[2].append(number)

    def notes(self, name: str) -> list[str]:
        out = []
        for key, (count, line, example) in self.other.items():
            more = f" and {count - 1} more line(s)" if count > 1 else ""
            out.append(f"{name}: key {shown(key, 80)} has values that are not numbers (line {line}: "
                       f"{shown(example, 40)}{more}): passed over")
        if self.extra_fields:
            names = ", ".join(shown(k, 40) for k in list(self.extra_fields)[:5])
            out.append(f"{name}: fields other than 'step' and 'data' passed over: {names} (first at line "
                       f"{min(self.extra_fields.values())})")
        if self.back is not None:
            line, step, before = self.back
            out.append(f"{name}: line {line}: step {step} after step {before}: the steps go back within the "
                       "file (two runs written into one file?); at a step logged twice the later line wins")
        return out


def _step(value: Any, at: str) -> int:
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise IngestError(f"{at}: step {shown(value)} is not a whole number")
    if value < 0 or value > MAX_STEP:
        raise IngestError(f"{at}: step {value}; steps must be whole numbers from 0 to 2^53")
    return value


def _complete(tail: bytes) -> bool:
    try:
        rec = json.loads(tail)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(rec, dict) and isinstance(rec.get("data"), dict)


def _span(lo: Any, hi: Any) -> str:
    return f"step {lo}" if lo == hi else f"steps {lo}–{hi}"


def read_verl_jsonl(path: str | Path, resume: tuple[int, Mapping[str, Any]] | None = None, *,
                    end: int | None = None, rewritten: tuple[str, Mapping[str, Any] | None] | None = None
                    ) -> VerlFileRead:
    """Read a verl file-logger file, or (``resume`` = (offset, state) of an earlier read) what was appended,
    up to byte ``end``. ``rewritten`` = (why, state of the last read of the earlier content) when the file
    was rewritten since it was last read (it is then read from its start)."""
    path = Path(path)
    where = str(path)
    name = path.name
    state = dict(resume[1]) if resume else {}
    start = resume[0] if resume else 0
    history = list(state.get("history") or [])
    pending = state.get("pending")
    if rewritten is not None:
        before = dict(rewritten[1] or {})
        history = list(before.get("history") or [])
        pending = {"why": rewritten[0], "first": before.get("first_step"), "last": before.get("last_step")}
    notices: list[str] = []
    lines = _Lines()
    try:
        with path.open("rb") as fh:
            reader = LineReader(fh, where, start=start, first_line=int(state.get("line", 1)), end=end)
            for block in reader:
                for i, raw in enumerate(block.data.split(b"\n")[:-1]):
                    if raw.strip():
                        lines.add_line(block.first_line + i, raw, where)
            tail = reader.tail
            if tail.data.strip():
                if _complete(tail.data):  # a whole object: taken, and read again next time (offset before it)
                    lines.add_line(tail.line, tail.data, where)
                else:
                    notices.append(f"{where}, line {tail.line}: the last line has no line end and is not a whole "
                                   "JSON object: left for the next sync (a writer still writing it, or one that "
                                   "was killed)")
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    first = state.get("first_step") if resume else None
    first = lines.first_step if first is None else first
    last = max((s for s in (state.get("last_step") if resume else None, lines.max_step) if s is not None),
               default=None)
    if pending and lines.first_step is not None:
        earlier = ("" if pending.get("first") is None
                   else f"; the earlier content held {_span(pending['first'], pending['last'])}")
        history.append(f"{name}: the file was rewritten ({pending['why']}), as verl's file logger does when a "
                       f"run resumes (it reopens the file with mode 'wb'); the new content starts at step "
                       f"{lines.first_step}{earlier}: the points stored before are kept, and where the new "
                       "content logs a key at a step its value replaces the stored one")
        pending = None
    elif pending:
        notices.append(f"{where}: rewritten ({pending['why']}) and empty for now, as when verl reopens its file "
                       "logger for a resumed run: the points stored before are kept; the new lines are read "
                       "when they come")
    elif resume is None and rewritten is None and lines.first_step is not None and lines.first_step > 1:
        history.append(f"{name}: the file starts at step {lines.first_step}, not 0 or 1: the run was resumed "
                       "from a checkpoint and verl's file logger rewrote the file then, so earlier steps are "
                       "not in it")
    history = history[-_MAX_HISTORY:]
    new_state = {"kind": FORMAT, "line": reader.tail.line, "first_step": first, "last_step": last,
                 "history": history, "pending": pending}
    run = None
    if lines.rows:
        series = tuple(Series.build(k, s, v, where=where, lines=ln) for k, (s, v, ln) in lines.by_key.items())
        info = RunInfo(external_id=str(path.resolve()), name=path.stem, project=path.resolve().parent.name or None,
                       params={"log_format": FORMAT})
        run = RunData(run=info, series=series, notes=(*history, *lines.notes(name)), origin=where,
                      partial=resume is not None, notices=tuple(notices))
    return VerlFileRead(run, reader.end_offset, new_state, lines.rows, tuple(notices))


def parse_verl_jsonl(path: str | Path) -> RunData | None:
    """The run of one whole verl file-logger file (None when it has no line yet)."""
    return read_verl_jsonl(path).run
