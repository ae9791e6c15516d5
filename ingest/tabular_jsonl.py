"""JSONL metric files (long or wide form, see ``ingest.tabular``): clean long-form blocks through pyarrow's JSON
reader, everything else line by line."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from db.errors import RecordError
from db.limits import MAX_KEY_CHARS, MAX_NAME_CHARS, check_name, clip, shown
from ingest.errors import IngestError
from ingest.steps import StepError, step_from_json
from ingest.tabular import (
    CHUNK_ROWS,
    Layout,
    TableRead,
    _Accumulator,
    _blocks,
    _kind_note,
    _runs,
    _step_error,
    _torn,
    detect_layout,
)
from ingest.textfile import MAX_LINE_BYTES, Block, LineReader, Tail, open_text

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


def read_jsonl(path: Path, resume: tuple[int, Mapping[str, Any]] | None, end: int | None) -> TableRead:
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


def _json_steps(steps: list[Any], lines: np.ndarray, where: str, key: str | None = None) -> np.ndarray:
    """JSON steps → int64 by ``ingest.steps``' rule; the first bad one is an error naming its line."""
    out = np.empty(len(steps), dtype=np.int64)
    for i, v in enumerate(steps):
        try:
            out[i] = step_from_json(v)
        except StepError as exc:
            raise _step_error(where, int(lines[i]), str(exc), key) from None
    return out

