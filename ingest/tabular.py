"""CSV and JSONL metric files → one ``RunData`` per run, streamed in chunks.

Two shapes, told apart by the header (CSV) or the first record (JSONL):

* long: one point per row/line — ``key`` (or ``metric``), ``step``, ``value``, optional ``run`` and
  ``wall_time``;
* wide: ``step`` plus one column per metric key, optional ``run`` and ``wall_time`` columns.

Without a run column the file is one run named after the file. Values must be numbers: NaN and ±inf are
kept as points (the store counts them, fits skip them); an empty CSV cell or a JSON ``null`` is a NaN
point in long form (that is how pandas writes NaN) and *no point* in wide form (a key not logged at that
step). A string value, a step that is negative or not a whole number, or a line that cannot be parsed is an
``IngestError`` naming the file, the line and the key. A step seen twice keeps the latest wall time (the
later line when wall times are equal or absent).

Large files are read in chunks (``CHUNK_ROWS`` lines) and kept as numpy arrays per (run, key), never as a
Python object per point: a 2-million-point JSONL file streams through in well under 500 MB.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from db.records import RunData, RunInfo, Series
from ingest.errors import IngestError

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
    if step is None:
        raise IngestError(
            f"{where}: columns {cols[:8]} are neither long form (run, key, step, value[, wall_time]) nor wide "
            "form (step + one column per key): no 'step' column")
    return Layout(step=step, run=run, wall=wall)


_Chunk = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class _Accumulator:
    """Per run, per key: lists of numpy chunks of steps, values and wall times (runs in order of appearance)."""

    runs: dict[str, dict[str, list[_Chunk]]] = field(default_factory=dict)

    def add(self, run: str, key: str, steps: np.ndarray, values: np.ndarray, walls: np.ndarray) -> None:
        if len(steps):
            self.runs.setdefault(run, {}).setdefault(key, []).append((steps, values, walls))

    def add_long(self, runs: np.ndarray, keys: np.ndarray, steps: np.ndarray, values: np.ndarray,
                 walls: np.ndarray) -> None:
        """One chunk of long-form rows, grouped by (run, key) with pandas."""
        frame = pd.DataFrame({"r": runs, "k": keys})
        for (run, key), idx in frame.groupby(["r", "k"], sort=False).indices.items():
            self.add(str(run), str(key), steps[idx], values[idx], walls[idx])

    def series(self, run: str, where: str) -> tuple[Series, ...]:
        out = []
        for key, parts in self.runs.get(run, {}).items():
            steps, values, walls = (np.concatenate([p[i] for p in parts]) for i in range(3))
            out.append(Series.build(key, steps, values, None if np.isnan(walls).all() else walls,
                                    where=where))
        return tuple(out)


def _check_steps(steps: np.ndarray, lines: np.ndarray, where: str, key: str | None = None) -> np.ndarray:
    """Float steps → int64; a NaN, fractional or negative step is an error naming its line."""
    bad = ~np.isfinite(steps) | (steps != np.round(steps)) | (steps < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        x = float(steps[i])
        what = (f"step {int(x) if x == round(x) else x}" if np.isfinite(x) else "missing step")
        why = "steps must be >= 0" if np.isfinite(steps[i]) and steps[i] < 0 else "steps must be whole numbers"
        at = f", key {key!r}" if key else ""
        raise IngestError(f"{where}, line {int(lines[i])}{at}: {what}; {why}")
    return steps.astype(np.int64)


# ----------------------------------------------------------------------------------------------- JSONL


def _json_number(v: Any) -> float | None:
    """A JSON number as float, None for null; raises TypeError for anything else."""
    if v is None:
        return None
    if type(v) is float or (type(v) is int):
        return float(v)
    raise TypeError


def _jsonl_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                msg = getattr(exc, "msg", str(exc))
                raise IngestError(f"{path}, line {number}: not valid JSON ({msg})") from None
            if not isinstance(rec, dict):
                raise IngestError(f"{path}, line {number}: expected a JSON object, got {type(rec).__name__}")
            yield number, rec


@dataclass
class _LongChunk:
    runs: list[Any] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def flush(self, acc: _Accumulator, where: str) -> None:
        if not self.lines:
            return
        lines = np.asarray(self.lines)
        steps = _check_steps(np.asarray(self.steps, dtype=np.float64), lines, where)
        acc.add_long(np.asarray(self.runs, dtype=object), np.asarray(self.keys, dtype=object), steps,
                     np.asarray(self.values, dtype=np.float64), np.asarray(self.walls, dtype=np.float64))
        self.__init__()  # type: ignore[misc]


def _number_or_error(rec: Mapping[str, Any], col: str, where: str, key: str | None = None) -> float:
    v = rec.get(col)
    try:
        f = _json_number(v)
    except TypeError:
        name = key if key is not None else col
        raise IngestError(f"{where}: key {name!r} has value {v!r}, not a number") from None
    return math.nan if f is None else f


def _read_jsonl_long(path: Path, layout: Layout, default_run: str, acc: _Accumulator) -> None:
    where = str(path)
    chunk = _LongChunk()
    kcol, scol, rcol, wcol = layout.key, layout.step, layout.run, layout.wall
    for number, rec in _jsonl_lines(path):
        at = f"{path}, line {number}"
        key = rec.get(kcol)  # type: ignore[arg-type]
        if not isinstance(key, str) or not key:
            raise IngestError(f"{at}: '{kcol}' must be a non-empty string, got {key!r}")
        value = _number_or_error(rec, "value", at, key)
        step = rec.get(scol)
        if type(step) is not int and type(step) is not float:
            raise IngestError(f"{at}, key {key!r}: step {step!r} is not a number")
        run = rec.get(rcol, default_run) if rcol else default_run
        if run is None or isinstance(run, dict | list):
            raise IngestError(f"{at}: run {run!r} is not a run name")
        chunk.runs.append(str(run))
        chunk.keys.append(key)
        chunk.steps.append(step)
        chunk.values.append(value)
        chunk.walls.append(_number_or_error(rec, wcol, at, wcol) if wcol else math.nan)
        chunk.lines.append(number)
        if len(chunk.lines) >= CHUNK_ROWS:
            chunk.flush(acc, where)
    chunk.flush(acc, where)


def _read_jsonl_wide(path: Path, layout: Layout, default_run: str, acc: _Accumulator) -> None:
    where = str(path)
    rows: dict[tuple[str, str], _LongChunk] = {}

    def flush() -> None:
        for (run, key), ch in rows.items():
            lines = np.asarray(ch.lines)
            steps = _check_steps(np.asarray(ch.steps, dtype=np.float64), lines, where, key)
            acc.add(run, key, steps, np.asarray(ch.values, dtype=np.float64),
                    np.asarray(ch.walls, dtype=np.float64))
        rows.clear()

    count = 0
    for number, rec in _jsonl_lines(path):
        at = f"{path}, line {number}"
        step = rec.get(layout.step)
        if type(step) is not int and type(step) is not float:
            raise IngestError(f"{at}: step {step!r} is not a number")
        run = str(rec.get(layout.run, default_run)) if layout.run else default_run
        wall = _number_or_error(rec, layout.wall, at, layout.wall) if layout.wall else math.nan
        for key, v in rec.items():
            if key in (layout.step, layout.run, layout.wall):
                continue
            try:
                value = _json_number(v)
            except TypeError:
                raise IngestError(f"{at}: key {key!r} has value {v!r}, not a number") from None
            if value is None:
                continue
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


def _read_jsonl_long_arrow(path: Path, layout: Layout, default_run: str) -> _Accumulator | None:
    """Fast path for clean long-form files: pyarrow's streaming JSON reader, batch by batch.

    Returns None when pyarrow is missing or the file is not clean (a parse error, a string value, a bad
    step, NaN tokens): the line-by-line reader then reads it and names the offending line.
    """
    try:
        import pyarrow as pa
        import pyarrow.json as pj
    except ImportError:
        return None
    fields = [(layout.key, pa.string()), (layout.step, pa.float64()), ("value", pa.float64())]
    fields += [(c, pa.float64()) for c in (layout.wall,) if c]
    fields += [(c, pa.string()) for c in (layout.run,) if c]
    acc = _Accumulator()
    try:
        reader = pj.open_json(path, read_options=pj.ReadOptions(block_size=4 << 20, use_threads=False),
                              parse_options=pj.ParseOptions(explicit_schema=pa.schema(fields),
                                                            unexpected_field_behavior="ignore"))
        for batch in reader:
            cols = {name: batch.column(name) for name, _ in fields}
            if cols[layout.key].null_count or cols[layout.step].null_count or (
                    layout.run and cols[layout.run].null_count):
                return None
            steps = cols[layout.step].to_numpy(zero_copy_only=False)
            if not (np.isfinite(steps).all() and (steps == np.round(steps)).all() and (steps >= 0).all()):
                return None
            keys = cols[layout.key].to_numpy(zero_copy_only=False)
            if (keys == "").any():
                return None
            n = batch.num_rows
            runs = (cols[layout.run].to_numpy(zero_copy_only=False) if layout.run
                    else np.full(n, default_run, dtype=object))
            walls = (cols[layout.wall].fill_null(np.nan).to_numpy(zero_copy_only=False) if layout.wall
                     else np.full(n, np.nan))
            acc.add_long(runs, keys, steps.astype(np.int64),
                         cols["value"].fill_null(np.nan).to_numpy(zero_copy_only=False), walls)
    except (pa.ArrowException, ValueError, TypeError):
        return None
    return acc


def _first_record(path: Path) -> dict[str, Any] | None:
    return next((rec for _, rec in _jsonl_lines(path)), None)


def read_jsonl(path: Path, acc: _Accumulator) -> Layout | None:
    first = _first_record(path)
    if first is None:
        return None
    layout = detect_layout(list(first), f"{path}, line 1")
    if layout.long:
        fast = _read_jsonl_long_arrow(path, layout, path.stem)
        if fast is not None:
            acc.runs.update(fast.runs)
            return layout
    reader = _read_jsonl_long if layout.long else _read_jsonl_wide
    reader(path, layout, path.stem, acc)
    return layout


# ------------------------------------------------------------------------------------------------- CSV


def _numeric(col: pd.Series, lines: np.ndarray, where: str, key: str) -> np.ndarray:
    """Column → float64; text that is no number is an error naming key and line."""
    if col.dtype.kind in "fiu":
        return col.to_numpy(dtype=np.float64)
    num = pd.to_numeric(col, errors="coerce")
    text = col.astype("string").str.strip().str.lower()
    bad = num.isna() & col.notna() & ~text.isin(_NAN_TEXT)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise IngestError(f"{where}, line {int(lines[i])}: key {key!r} has value {col.iloc[i]!r}, not a number")
    return num.to_numpy(dtype=np.float64)


def read_csv(path: Path, acc: _Accumulator) -> Layout | None:
    where = str(path)
    try:
        header = pd.read_csv(path, nrows=0).columns.tolist()
    except pd.errors.EmptyDataError:
        return None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise IngestError(f"{path}: not a readable CSV file ({exc})") from None
    layout = detect_layout(header, where)
    text_cols = {c: "string" for c in (layout.run, layout.key) if c}
    reader = pd.read_csv(path, chunksize=CHUNK_ROWS, keep_default_na=False, na_values=[""],
                         skip_blank_lines=False, dtype=text_cols)  # type: ignore[arg-type]
    first_line = 2
    try:
        for chunk in reader:
            lines = np.arange(first_line, first_line + len(chunk))
            first_line += len(chunk)
            _csv_chunk(chunk, lines, layout, path, acc)
    except pd.errors.ParserError as exc:
        raise IngestError(f"{path}: {exc}") from None
    return layout


def _csv_chunk(chunk: pd.DataFrame, lines: np.ndarray, layout: Layout, path: Path, acc: _Accumulator) -> None:
    where = str(path)
    keep = ~chunk.isna().all(axis=1).to_numpy()  # blank lines
    chunk, lines = chunk[keep], lines[keep]
    if chunk.empty:
        return
    steps = _check_steps(_numeric(chunk[layout.step], lines, where, layout.step),
                         lines, where)
    walls = (_numeric(chunk[layout.wall], lines, where, layout.wall) if layout.wall
             else np.full(len(chunk), np.nan))
    runs = (chunk[layout.run].fillna("").to_numpy(dtype=object) if layout.run
            else np.full(len(chunk), path.stem, dtype=object))
    if layout.long:
        keys = chunk[layout.key]
        if keys.isna().any():
            i = int(np.flatnonzero(keys.isna().to_numpy())[0])
            raise IngestError(f"{where}, line {int(lines[i])}: empty '{layout.key}'")
        values = _numeric(chunk["value"], lines, where, "value")
        acc.add_long(runs, keys.to_numpy(dtype=object), steps, values, walls)
        return
    for key in layout.metric_columns(list(chunk.columns)):
        values = _numeric(chunk[key], lines, where, key)
        present = chunk[key].notna().to_numpy()
        for run in pd.unique(runs):
            m = present & (runs == run)
            acc.add(str(run), key, steps[m], values[m], walls[m])


# ----------------------------------------------------------------------------------------------- runs


def read_table(path: str | Path) -> list[RunData]:
    """All runs of one CSV (``.csv``) or JSONL (``.jsonl``/``.ndjson``) file."""
    path = Path(path)
    acc = _Accumulator()
    try:
        layout = read_csv(path, acc) if path.suffix.lower() == ".csv" else read_jsonl(path, acc)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if layout is None:
        return []
    base = str(path.resolve())
    out = []
    for run in acc.runs:
        multi = layout.run is not None
        where = f"{path}, run {run!r}" if multi else str(path)
        info = RunInfo(external_id=f"{base}#{run}" if multi else base, name=run if multi else path.stem,
                       params={"file_format": ("long" if layout.long else "wide") + "_" + path.suffix.lstrip(".")})
        out.append(RunData(run=info, series=acc.series(run, where)))
    return out
