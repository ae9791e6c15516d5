"""CSV and JSONL metric files → one ``RunData`` per run, streamed in blocks, from a byte offset when tailing.

Two shapes, told apart by the header (CSV) or the first record (JSONL):

* long: one point per row/line — ``key`` (or ``metric``), ``step``, ``value``, optional ``run`` and
  ``wall_time``;
* wide: ``step`` plus one column per metric key, optional ``run`` and ``wall_time`` columns.

Without a run column the file is one run named after the file. Values must be numbers, one rule for CSV
cells and JSON values: a number, or text holding one (a JSON ``"0.5"`` is 0.5 as the CSV cell ``0.5`` is);
NaN and ±inf are kept as points (the store keeps them as missing values, fits skip them); an empty CSV cell,
a JSON ``null`` or ``""`` is a NaN point in long form (that is how pandas writes NaN) and *no point* in wide
form (a key not logged at that step). Steps follow ``ingest.steps`` (integers written as integers, read
exactly). These are ``IngestError``s naming the file and the line (and key or column):

* text that is no number; a step that breaks the step rule; a line that cannot be parsed;
* a CSV row with more or fewer fields than the header; a header naming a column twice; bytes that are not
  UTF-8; a long-form JSONL line without a ``value`` (or ``key``/``step``) field;
* a line over 1 MiB (``ingest.textfile``), a key or run name over 512 characters (``db.limits``).

A step seen twice keeps the latest wall time (the later line when wall times are equal or absent). Columns
with no name in a CSV header (a pandas index written with ``to_csv``) are passed over, with a note on the
file's runs.

The last line of a file without a line end is taken when it is complete — a whole JSON object; all CSV
fields, in a file unchanged for ``SETTLE_SECONDS`` (a CSV number may still be cut short) — with the saved
offset before it, so the next sync reads it again; otherwise it is left for the next sync with a notice (a
writer still writing, or a killed one): a torn line never becomes a point.

Files are read in blocks of whole lines (``ingest.textfile``) and kept as numpy arrays per (run, key),
never as a Python object per point; clean long-form JSONL goes through pyarrow's JSON reader block by block.
``read_table_from`` resumes at a byte offset with the state a previous read returned (header, layout, line
number): appended lines are parsed on their own.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from db.errors import RecordError
from db.limits import MAX_KEY_CHARS, MAX_NAME_CHARS, check_name, clip, shown
from db.records import RunData, RunInfo, Series
from ingest.errors import IngestError
from ingest.steps import StepError, step_from_json, steps_from_column
from ingest.textfile import (
    MAX_LINE_BYTES,
    SETTLE_SECONDS,
    Block,
    LineReader,
    Tail,
    TextFile,
    decode_utf8,
    open_text,
)

CHUNK_ROWS = 200_000
KEY_COLUMNS = ("key", "metric")
RUN_COLUMNS = ("run", "run_name")
STEP_COLUMNS = ("step", "global_step", "_step")
WALL_COLUMNS = ("wall_time", "timestamp", "_timestamp")
_NAN_TEXT = {"nan", "-nan", "+nan"}


@dataclass(frozen=True)
class Layout:
    """Which columns play which part; ``key`` is None in wide form."""

    step: str
    key: str | None = None
    value: str | None = None
    run: str | None = None
    wall: str | None = None

    @property
    def long(self) -> bool:
        return self.key is not None

    def metric_columns(self, columns: Sequence[str]) -> list[str]:
        roles = {self.step, self.run, self.wall}
        return [c for c in columns if c not in roles]


def detect_layout(columns: Sequence[str], where: str) -> Layout:
    """Long form when key, step and value columns exist; wide when a step column does."""
    cols = list(columns)

    def pick(names: Sequence[str]) -> str | None:
        return next((c for c in names if c in cols), None)

    step, run, wall, key = pick(STEP_COLUMNS), pick(RUN_COLUMNS), pick(WALL_COLUMNS), pick(KEY_COLUMNS)
    if key is not None and "value" in cols and step is not None:
        return Layout(step=step, key=key, value="value", run=run, wall=wall)
    if key is not None and step is not None:
        raise IngestError(f"{where}: a '{key}' and a '{step}' column but no 'value' column: long form needs "
                          f"{key}, {step} and value (wide form: {step} + one column per key)")
    if step is None:
        raise IngestError(
            f"{where}: columns {shown(cols[:8], 200)} are neither long form (run, key, step, value[, wall_time]) "
            "nor wide form (step + one column per key): no 'step' column")
    return Layout(step=step, run=run, wall=wall)


_Chunk = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class _Accumulator:
    """Per run, per key: lists of numpy chunks of steps, values, wall times and source lines."""

    runs: dict[str, dict[str, list[_Chunk]]] = field(default_factory=dict)
    rows: int = 0  # data rows read

    def add(self, run: str, key: str, steps: np.ndarray, values: np.ndarray, walls: np.ndarray,
            lines: np.ndarray) -> None:
        if len(steps):
            self.runs.setdefault(run, {}).setdefault(key, []).append((steps, values, walls, lines))

    def add_long(self, runs: np.ndarray, keys: np.ndarray, steps: np.ndarray, values: np.ndarray,
                 walls: np.ndarray, lines: np.ndarray) -> None:
        """One chunk of long-form rows, grouped by (run, key) with pandas."""
        frame = pd.DataFrame({"r": runs, "k": keys})
        for (run, key), idx in frame.groupby(["r", "k"], sort=False).indices.items():
            self.add(str(run), str(key), steps[idx], values[idx], walls[idx], lines[idx])

    def series(self, run: str, where: str) -> tuple[Series, ...]:
        out = []
        for key, parts in self.runs.get(run, {}).items():
            steps, values, walls, lines = (np.concatenate([p[i] for p in parts]) for i in range(4))
            out.append(Series.build(key, steps, values, None if np.isnan(walls).all() else walls,
                                    where=where, lines=lines))
        return tuple(out)


def _step_error(where: str, line: int, why: str, key: str | None = None) -> IngestError:
    at = f", key {shown(key)}" if key else ""
    return IngestError(f"{where}, line {line}{at}: {why}")


def _json_steps(steps: list[Any], lines: np.ndarray, where: str, key: str | None = None) -> np.ndarray:
    """JSON steps → int64 by ``ingest.steps``' rule; the first bad one is an error naming its line."""
    out = np.empty(len(steps), dtype=np.int64)
    for i, v in enumerate(steps):
        try:
            out[i] = step_from_json(v)
        except StepError as exc:
            raise _step_error(where, int(lines[i]), str(exc), key) from None
    return out


def _check_names(names: np.ndarray, lines: np.ndarray, what: str, where: str, limit: int) -> None:
    """Keys / run names of a chunk within ``db.limits`` (length, no NUL), naming the first bad line."""
    if not len(names):
        return
    lengths = pd.Series(names, dtype=object).str.len().to_numpy()
    nul = pd.Series(names, dtype=object).str.contains("\0", regex=False).to_numpy(dtype=bool)
    bad = np.flatnonzero((lengths > limit) | nul)
    if len(bad):
        i = int(bad[0])
        try:
            check_name(str(names[i]), what, f"{where}, line {int(lines[i])}", limit)
        except RecordError as exc:
            raise IngestError(str(exc)) from None


# ----------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class TableRead:
    """What one read of a CSV/JSONL file gave: its runs, how far it got, and the state to resume from."""

    runs: list[RunData]
    offset: int  # bytes consumed: the next read starts here
    state: dict[str, Any]  # parser state at ``offset`` (empty when nothing may be resumed)
    rows: int  # data rows read
    notices: list[str]


def _blocks(reader: LineReader, where: str, complete: Any) -> Iterator[Block]:
    """The reader's blocks, then its last unterminated line when ``complete(tail)`` says it is whole."""
    yield from reader
    tail: Tail = reader.tail
    if tail.data.strip() and complete(tail):
        yield Block(tail.data + b"\n", tail.offset, tail.line)


def _torn(tail: Tail, where: str, why: str) -> str:
    return (f"{where}, line {tail.line}: the last line has no line end and is incomplete ({why}): left for the "
            "next sync (a writer still writing it, or one that was killed)")


# ------------------------------------------------------------------------------------------------- CSV


def _header(fh: Any, where: str) -> tuple[list[str], int] | None:
    """Column names and the byte offset after the header line; None when there is no whole header line."""
    raw = fh.readline(MAX_LINE_BYTES + 1)
    if len(raw) > MAX_LINE_BYTES:
        raise IngestError(f"{where}, line 1: the header is longer than the 1 MiB line limit")
    if not raw.endswith(b"\n"):
        return None
    text = decode_utf8(raw, 1, where).removeprefix("\ufeff")
    if not text.strip():
        raise IngestError(f"{where}, line 1: blank; the first line must be the header (column names)")
    cols = next(csv.reader([text.rstrip("\r\n")]))
    seen: dict[str, int] = {}
    for i, c in enumerate(cols, start=1):
        if c and c in seen:
            raise IngestError(f"{where}, line 1: column {shown(c)} appears twice in the header (columns "
                              f"{seen[c]} and {i}); give every column its own name")
        seen.setdefault(c, i)
        if len(c) > MAX_KEY_CHARS:
            raise IngestError(f"{where}, line 1: column {i} name {shown(c)} is longer than the "
                              f"{MAX_KEY_CHARS}-character limit for metric keys")
        if "\0" in c:
            raise IngestError(f"{where}, line 1: column {i} name {shown(c)} contains a NUL byte")
    return cols, len(raw)


def _field_counts(data: bytes) -> np.ndarray:
    """Fields per line of a block of whole lines (0 for blank lines)."""
    if b'"' in data:  # quoted fields may hold commas: count with the csv module, line by line
        lines = data.decode("utf-8").split("\n")[:-1]
        return np.array([len(next(csv.reader([ln.rstrip("\r")]))) if ln.strip() else 0 for ln in lines],
                        dtype=np.int64)
    arr = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    commas = np.flatnonzero(arr == 44)
    per_line = np.diff(np.searchsorted(commas, ends), prepend=0)
    starts = np.concatenate([[0], ends[:-1] + 1])
    length = ends - starts
    cr = (length == 1) & (arr[np.maximum(ends - 1, 0)] == 13)
    blank = (length == 0) | cr
    return np.where(blank, 0, per_line + 1)


def _check_fields(block: Block, ncols: int, where: str, columns: Sequence[str]) -> None:
    counts = _field_counts(block.data)
    bad = np.flatnonzero((counts != ncols) & (counts != 0))
    if len(bad):
        i = int(bad[0])
        k = int(counts[i])
        what = "missing" if k < ncols else "extra"
        raise IngestError(f"{where}, line {block.first_line + i}: {k} fields where the header has {ncols} "
                          f"({shown(','.join(columns), 80)}): {what} value(s)")


def _numeric(col: pd.Series, lines: np.ndarray, where: str, key: str) -> np.ndarray:
    """Column → float64; text that is no number is an error naming key and line."""
    if col.dtype.kind in "fiu":
        return col.to_numpy(dtype=np.float64)
    num = pd.to_numeric(col, errors="coerce")
    text = col.astype("string").str.strip().str.lower()
    bad = num.isna() & col.notna() & ~text.isin(_NAN_TEXT)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise IngestError(f"{where}, line {int(lines[i])}: key {shown(key)} has value {shown(col.iloc[i])}, "
                          "not a number")
    return num.to_numpy(dtype=np.float64)


def _read_csv(path: Path, resume: tuple[int, Mapping[str, Any]] | None, end: int | None,
              settled: bool) -> TableRead:
    where = str(path)
    notices: list[str] = []
    file_notes: list[str] = []  # stored on the file's runs
    acc = _Accumulator()
    with open_text(path, where) as tf:
        fh, end = tf.fh, (end if tf.tailable else None)
        if resume is None:
            head = _header(fh, where)
            if head is None:
                return TableRead([], 0, {}, 0, notices)
            header, start = head
            keep = [c for c in header if c]
            if len(keep) < len(header):
                gaps = [i for i, c in enumerate(header, start=1) if not c]
                file_notes.append(f"{where}: column(s) {', '.join(map(str, gaps))} of the header have no name "
                               "(a pandas index written by to_csv?): passed over")
            layout = detect_layout(keep, where)
            state = {"kind": "csv", "columns": header, "layout": asdict(layout), "line": 2}
        else:
            start, state = resume[0], dict(resume[1])
            header, layout = list(state["columns"]), Layout(**state["layout"])
        reader = LineReader(fh, where, start=start, first_line=int(state["line"]), end=end)

        def complete(tail: Tail) -> bool:
            try:
                fields = len(next(csv.reader([tail.data.decode("utf-8").rstrip("\r")])))
            except (UnicodeDecodeError, StopIteration, csv.Error):
                notices.append(_torn(tail, where, "cut inside a character"))
                return False
            if fields != len(header):
                notices.append(_torn(tail, where, f"{fields} of {len(header)} fields"))
                return False
            if not settled:
                notices.append(f"{where}, line {tail.line}: the last line has no line end yet and the file changed "
                               f"less than {SETTLE_SECONDS:g} s ago: left for the next sync (its last value may "
                               "still be cut short)")
                return False
            return True

        text_cols = {c: "string" for c in (layout.run, layout.key) if c}
        names = [c if c else f"\0unnamed{i}" for i, c in enumerate(header)]
        for block in _blocks(reader, where, complete):
            text = decode_utf8(block.data, block.first_line, where)
            if b'"' in block.data and any(ln.count('"') % 2 for ln in text.split("\n")):
                _csv_records(text, block, header, names, layout, path, acc)  # a quoted field holds a newline
                continue
            _check_fields(block, len(header), where, header)
            first = block.first_line
            try:
                chunks = pd.read_csv(io.BytesIO(block.data), header=None, names=names, chunksize=CHUNK_ROWS,
                                     keep_default_na=False, na_values=[""], skip_blank_lines=False,
                                     dtype=text_cols, encoding="utf-8")  # type: ignore[arg-type]
                for chunk in chunks:
                    lines = np.arange(first, first + len(chunk))
                    first += len(chunk)
                    _csv_chunk(chunk[[n for n in names if not n.startswith("\0")]], lines, layout, path, acc,
                               _StepText(block, names, layout.step))
            except pd.errors.ParserError as exc:
                raise IngestError(f"{where}: not a readable CSV block from line {block.first_line} "
                                  f"({shown(str(exc), 200)})") from None
    state["line"] = reader.tail.line
    offset, state = (reader.end_offset, state) if tf.tailable else (0, {})  # UTF-16: read whole every time
    return TableRead(_runs(path, acc, layout, partial=resume is not None, notes=file_notes + _kind_note(tf, where)),
                     offset, state, acc.rows, notices)


def _kind_note(tf: TextFile, where: str) -> list[str]:
    if tf.kind == "cr":
        return [f"{where}: lines end in CR alone (old Mac line ends): read as lines"]
    if tf.kind == "utf-16":
        return [f"{where}: UTF-16 text (byte-order mark): read as text, whole at every sync (not tailed)"]
    return []


def _csv_records(text: str, block: Block, header: list[str], names: list[str], layout: Layout, path: Path,
                 acc: _Accumulator) -> None:
    """A block whose quoted fields hold line ends (RFC 4180), read record by record with the ``csv`` module;
    each record is named by the line it starts on."""
    where = str(path)
    rows, lines = [], []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = block.first_line
    try:
        for rec in reader:
            if rec and rec != [""]:
                if len(rec) != len(header):
                    what = "missing" if len(rec) < len(header) else "extra"
                    raise IngestError(f"{where}, line {start}: {len(rec)} fields where the header has {len(header)} "
                                      f"({shown(','.join(header), 80)}): {what} value(s)")
                rows.append([v if v != "" else None for v in rec])
                lines.append(start)
            start = block.first_line + reader.line_num
    except csv.Error as exc:
        raise IngestError(f"{where}, line {start}: not a readable CSV record ({exc}; a quoted field must end with "
                          "a quote)") from None
    if rows:
        frame = pd.DataFrame(rows, columns=names, dtype=object)
        _csv_chunk(frame[[n for n in names if not n.startswith("\0")]], np.asarray(lines), layout, path, acc,
                   None)


class _StepText:
    """The step column of a CSV block as the text written (read only when pandas did not read it as integers:
    a float column may already have lost digits, and "1.0" must be refused, not read as 1)."""

    def __init__(self, block: Block, names: list[str], step: str) -> None:
        self.block, self.names, self.step = block, names, step
        self._col: np.ndarray | None = None

    def at(self, lines: np.ndarray) -> pd.Series:
        if self._col is None:
            self._col = pd.read_csv(io.BytesIO(self.block.data), header=None, names=self.names, usecols=[self.step],
                                    dtype=str, keep_default_na=False, skip_blank_lines=False,
                                    encoding="utf-8")[self.step].to_numpy(dtype=object)
        return pd.Series(self._col[lines - self.block.first_line], dtype=object)


def _csv_chunk(chunk: pd.DataFrame, lines: np.ndarray, layout: Layout, path: Path, acc: _Accumulator,
               step_text: _StepText | None) -> None:
    where = str(path)
    keep = ~chunk.isna().all(axis=1).to_numpy()  # blank lines
    chunk, lines = chunk[keep], lines[keep]
    if chunk.empty:
        return
    acc.rows += len(chunk)
    col = chunk[layout.step]
    steps, bad, why = steps_from_column(col if col.dtype.kind in "iuO" or step_text is None else
                                        step_text.at(lines))
    if bad is not None:
        raise _step_error(where, int(lines[bad]), why)
    walls = (_numeric(chunk[layout.wall], lines, where, layout.wall) if layout.wall
             else np.full(len(chunk), np.nan))
    runs = (chunk[layout.run].fillna("").to_numpy(dtype=object) if layout.run
            else np.full(len(chunk), path.stem, dtype=object))
    if layout.run:
        _check_names(runs, lines, "run name", where, MAX_NAME_CHARS)
    if layout.long:
        keys = chunk[layout.key]
        if keys.isna().any():
            i = int(np.flatnonzero(keys.isna().to_numpy())[0])
            raise IngestError(f"{where}, line {int(lines[i])}: empty '{layout.key}'")
        keys_arr = keys.to_numpy(dtype=object)
        _check_names(keys_arr, lines, "metric key", where, MAX_KEY_CHARS)
        values = _numeric(chunk["value"], lines, where, "value")
        acc.add_long(runs, keys_arr, steps, values, walls, lines)
        return
    for key in layout.metric_columns(list(chunk.columns)):
        values = _numeric(chunk[key], lines, where, key)
        present = chunk[key].notna().to_numpy()
        for run in pd.unique(runs):
            m = present & (runs == run)
            acc.add(str(run), key, steps[m], values[m], walls[m], lines[m])


# ----------------------------------------------------------------------------------------------- JSONL


_NUMBER_TEXT = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*|\s*[+-]?(?:nan|inf|infinity)\s*",
                          re.IGNORECASE)


def _json_number(v: Any) -> float | None:
    """A JSON value as a number, None for a missing one; raises TypeError for anything else. One rule with
    CSV cells: a number, or text holding one ("0.5", " 1e-3 ", "nan", "inf"); null or "" (an empty CSV cell)
    is a missing value."""
    if v is None:
        return None
    if type(v) is float or (type(v) is int):
        return float(v)
    if isinstance(v, str) and len(v) < 100:
        if not v.strip():
            return None
        if _NUMBER_TEXT.fullmatch(v):
            return float(v)
    raise TypeError


def _block_lines(block: Block) -> Iterator[tuple[int, bytes]]:
    for i, raw in enumerate(block.data.split(b"\n")[:-1]):
        if raw.strip():
            yield block.first_line + i, raw


def _record(raw: bytes, number: int, where: str) -> dict[str, Any]:
    try:
        rec = json.loads(raw)
    except RecursionError:
        raise IngestError(f"{where}, line {number}: JSON nested too deeply (more than about 1,000 levels of "
                          "arrays/objects): refused") from None
    except (ValueError, UnicodeDecodeError) as exc:
        msg = getattr(exc, "msg", None) or clip(str(exc), 120)
        raise IngestError(f"{where}, line {number}: not valid JSON ({msg})") from None
    if not isinstance(rec, dict):
        raise IngestError(f"{where}, line {number}: expected a JSON object, got {type(rec).__name__}")
    return rec


@dataclass
class _LongChunk:
    runs: list[Any] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    steps: list[Any] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def flush(self, acc: _Accumulator, where: str) -> None:
        if not self.lines:
            return
        lines = np.asarray(self.lines)
        steps = _json_steps(self.steps, lines, where)
        acc.add_long(np.asarray(self.runs, dtype=object), np.asarray(self.keys, dtype=object), steps,
                     np.asarray(self.values, dtype=np.float64), np.asarray(self.walls, dtype=np.float64), lines)
        self.__init__()  # type: ignore[misc]


def _number_or_error(rec: Mapping[str, Any], col: str, where: str, key: str | None = None) -> float:
    v = rec.get(col)
    try:
        f = _json_number(v)
    except TypeError:
        name = key if key is not None else col
        raise IngestError(f"{where}: key {shown(name)} has value {shown(v)}, not a number") from None
    return math.nan if f is None else f


def _run_name(rec: Mapping[str, Any], col: str | None, default: str, at: str) -> str:
    if not col:
        return default
    run = rec.get(col, default)
    if run is None or isinstance(run, dict | list):
        raise IngestError(f"{at}: run {shown(run)} is not a run name")
    run = str(run)
    try:
        check_name(run, "run name", at, MAX_NAME_CHARS)
    except RecordError as exc:
        raise IngestError(str(exc)) from None
    return run


def _jsonl_long_lines(block: Block, layout: Layout, default_run: str, acc: _Accumulator, where: str) -> None:
    chunk = _LongChunk()
    kcol, scol, rcol, wcol = layout.key, layout.step, layout.run, layout.wall
    for number, raw in _block_lines(block):
        acc.rows += 1
        rec = _record(raw, number, where)
        at = f"{where}, line {number}"
        key = rec.get(kcol)  # type: ignore[arg-type]
        if not isinstance(key, str) or not key:
            raise IngestError(f"{at}: '{kcol}' must be a non-empty string, got {shown(key)}")
        try:
            check_name(key, "metric key", at, MAX_KEY_CHARS)
        except RecordError as exc:
            raise IngestError(str(exc)) from None
        if "value" not in rec:
            raise IngestError(f"{at}, key {shown(key)}: no 'value' field (long-form lines need "
                              f"'{kcol}', '{scol}' and 'value'; null marks a missing value)")
        value = _number_or_error(rec, "value", at, key)
        step = rec.get(scol)
        chunk.runs.append(_run_name(rec, rcol, default_run, at))
        chunk.keys.append(key)
        chunk.steps.append(step)
        chunk.values.append(value)
        chunk.walls.append(_number_or_error(rec, wcol, at, wcol) if wcol else math.nan)
        chunk.lines.append(number)
        if len(chunk.lines) >= CHUNK_ROWS:
            chunk.flush(acc, where)
    chunk.flush(acc, where)


def _jsonl_wide_lines(block: Block, layout: Layout, default_run: str, acc: _Accumulator, where: str) -> None:
    rows: dict[tuple[str, str], _LongChunk] = {}

    def flush() -> None:
        for (run, key), ch in rows.items():
            lines = np.asarray(ch.lines)
            steps = _json_steps(ch.steps, lines, where, key)
            acc.add(run, key, steps, np.asarray(ch.values, dtype=np.float64),
                    np.asarray(ch.walls, dtype=np.float64), lines)
        rows.clear()

    count = 0
    for number, raw in _block_lines(block):
        rec = _record(raw, number, where)
        at = f"{where}, line {number}"
        if layout.step not in rec:
            raise IngestError(f"{at}: no '{layout.step}' field (every line of a wide-form file needs one)")
        step = rec.get(layout.step)
        run = _run_name(rec, layout.run, default_run, at)
        wall = _number_or_error(rec, layout.wall, at, layout.wall) if layout.wall else math.nan
        acc.rows += 1
        for key, v in rec.items():
            if key in (layout.step, layout.run, layout.wall):
                continue
            try:
                value = _json_number(v)
            except TypeError:
                raise IngestError(f"{at}: key {shown(key)} has value {shown(v)}, not a number") from None
            if value is None:
                continue
            try:
                check_name(key, "metric key", at, MAX_KEY_CHARS)
            except RecordError as exc:
                raise IngestError(str(exc)) from None
            ch = rows.get((run, key))
            if ch is None:
                ch = rows[(run, key)] = _LongChunk()
            ch.steps.append(step)
            ch.values.append(value)
            ch.walls.append(wall)
            ch.lines.append(number)
            count += 1
        if count >= CHUNK_ROWS:
            flush()
            count = 0
    flush()


def _jsonl_long_arrow(block: Block, layout: Layout, default_run: str, acc: _Accumulator) -> bool:
    """Fast path for clean long-form blocks: pyarrow's JSON reader. False when pyarrow is missing or the
    block is not clean (a parse error, a string value, a missing or null value, a bad step, NaN tokens, blank
    lines, a key over the limit): the line-by-line reader then reads it and names the offending line."""
    try:
        import pyarrow as pa
        import pyarrow.json as pj
    except ImportError:
        return False
    n_lines = block.data.count(b"\n")
    fields = [(layout.key, pa.string()), (layout.step, pa.int64()), ("value", pa.float64())]
    fields += [(c, pa.float64()) for c in (layout.wall,) if c]
    fields += [(c, pa.string()) for c in (layout.run,) if c]
    try:
        table = pj.read_json(pa.BufferReader(block.data),
                             read_options=pj.ReadOptions(block_size=max(4 << 20, MAX_LINE_BYTES + 1),
                                                         use_threads=False),
                             parse_options=pj.ParseOptions(explicit_schema=pa.schema(fields),
                                                           unexpected_field_behavior="ignore"))
    except (pa.ArrowException, ValueError, TypeError):
        return False
    try:
        return _arrow_table(table, fields, n_lines, block, layout, default_run, acc)
    except (pa.ArrowException, ValueError, TypeError, UnicodeDecodeError):  # e.g. a string that is not UTF-8
        return False


def _arrow_table(table: Any, fields: list, n_lines: int, block: Block, layout: Layout, default_run: str,
                 acc: _Accumulator) -> bool:
    import pyarrow.compute as pc

    if table.num_rows != n_lines:  # blank lines: row numbers would not be line numbers
        return False
    cols = {name: table.column(name) for name, _ in fields}
    if cols[layout.key].null_count or cols[layout.step].null_count or cols["value"].null_count or (
            layout.run and cols[layout.run].null_count):
        return False
    steps = cols[layout.step].to_numpy()
    if not (steps >= 0).all():
        return False
    keys = cols[layout.key].to_numpy()
    key_len = pc.utf8_length(cols[layout.key])
    if (keys == "").any() or pc.max(key_len).as_py() > MAX_KEY_CHARS:
        return False
    if pc.any(pc.match_substring(cols[layout.key], "\0")).as_py():
        return False
    n = table.num_rows
    if layout.run:
        runs = cols[layout.run]
        if pc.max(pc.utf8_length(runs)).as_py() > MAX_NAME_CHARS or pc.any(
                pc.match_substring(runs, "\0")).as_py():
            return False
        runs = runs.to_numpy()
    else:
        runs = np.full(n, default_run, dtype=object)
    walls = cols[layout.wall].fill_null(np.nan).to_numpy() if layout.wall else np.full(n, np.nan)
    acc.rows += n
    acc.add_long(runs, keys, steps, cols["value"].to_numpy(), walls,
                 np.arange(block.first_line, block.first_line + n))
    return True


def _read_jsonl(path: Path, resume: tuple[int, Mapping[str, Any]] | None, end: int | None) -> TableRead:
    where = str(path)
    notices: list[str] = []
    acc = _Accumulator()
    start, state = (0, {"kind": "jsonl", "line": 1}) if resume is None else (resume[0], dict(resume[1]))
    layout = Layout(**state["layout"]) if state.get("layout") else None

    def complete(tail: Tail) -> bool:
        try:
            ok = isinstance(json.loads(tail.data), dict)
        except (ValueError, UnicodeDecodeError, RecursionError):
            ok = False
        if not ok:
            notices.append(_torn(tail, where, "not a whole JSON object"))
        return ok

    with open_text(path, where) as tf:
        reader = LineReader(tf.fh, where, start=start, first_line=int(state["line"]),
                            end=end if tf.tailable else None)
        for block in _blocks(reader, where, complete):
            if layout is None:
                first = next(_block_lines(block), None)
                if first is None:
                    continue
                layout = detect_layout(list(_record(first[1], first[0], where)), f"{where}, line {first[0]}")
            if layout.long:
                if not _jsonl_long_arrow(block, layout, path.stem, acc):
                    _jsonl_long_lines(block, layout, path.stem, acc, where)
            else:
                _jsonl_wide_lines(block, layout, path.stem, acc, where)
    state["line"] = reader.tail.line
    offset = reader.end_offset if tf.tailable else 0
    if layout is None:
        return TableRead([], offset, state if tf.tailable else {}, 0, notices)
    state["layout"] = asdict(layout)
    return TableRead(_runs(path, acc, layout, partial=resume is not None, notes=_kind_note(tf, where)), offset,
                     state if tf.tailable else {}, acc.rows, notices)


# ----------------------------------------------------------------------------------------------- runs


def _runs(path: Path, acc: _Accumulator, layout: Layout, *, partial: bool,
          notes: Sequence[str] = ()) -> list[RunData]:
    base = str(path.resolve())
    out = []
    multi = layout.run is not None
    fmt = ("long" if layout.long else "wide") + "_" + path.suffix.lstrip(".").lower()
    for run in acc.runs:
        where = f"{path}, run {shown(run, 80)}" if multi else str(path)
        info = RunInfo(external_id=f"{base}#{run}" if multi else base, name=run if multi else path.stem,
                       params={"file_format": fmt})
        out.append(RunData(run=info, series=acc.series(run, where), origin=str(path), partial=partial,
                           notes=tuple(notes)))
    return out


def read_table_from(path: str | Path, resume: tuple[int, Mapping[str, Any]] | None = None,
                    end: int | None = None, *, settled: bool = True) -> TableRead:
    """Read a CSV (``.csv``) or JSONL (``.jsonl``/``.ndjson``) file, or only what follows ``resume``'s
    offset (with the state an earlier read returned), up to byte ``end``. ``settled``: the file has not
    changed for a while (an unterminated but complete-looking CSV line may then be taken)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            return _read_csv(path, resume, end, settled)
        return _read_jsonl(path, resume, end)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_table(path: str | Path) -> list[RunData]:
    """All runs of one CSV or JSONL file (a file with no data rows has none)."""
    return read_table_from(path).runs
