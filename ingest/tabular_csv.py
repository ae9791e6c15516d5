"""CSV metric files (long or wide form, see ``ingest.tabular``): header, blocks of rows read by pandas, records
with quoted line ends read by the ``csv`` module."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from db.limits import MAX_KEY_CHARS, MAX_NAME_CHARS, shown
from ingest.errors import IngestError
from ingest.steps import steps_from_column
from ingest.tabular import (
    _NAN_TEXT,
    CHUNK_ROWS,
    Layout,
    TableRead,
    _Accumulator,
    _blocks,
    _check_names,
    _kind_note,
    _runs,
    _step_error,
    _torn,
    detect_layout,
)
from ingest.textfile import MAX_LINE_BYTES, SETTLE_SECONDS, Block, LineReader, Tail, decode_utf8, open_text


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


def read_csv(path: Path, resume: tuple[int, Mapping[str, Any]] | None, end: int | None,
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
    keys = layout.metric_columns(list(chunk.columns))
    columns = [(key, _numeric(chunk[key], lines, where, key), chunk[key].notna().to_numpy()) for key in keys]
    for run, idx, ordered in _rows_by_run(runs, steps):
        for key, values, present in columns:
            m = idx[present[idx]]
            acc.add(str(run), key, steps[m], values[m], walls[m], lines[m], ordered=ordered)


def _rows_by_run(runs: np.ndarray, steps: np.ndarray) -> list[tuple[Any, np.ndarray, bool]]:
    """Each run of a chunk with its row indices (in the order the runs first appear) and whether its steps
    strictly increase down the rows: one grouping pass over the chunk, not a scan of the chunk per run (which
    grows with runs × rows)."""
    codes, names = pd.factorize(runs)
    order = np.argsort(codes, kind="stable")
    c, s = codes[order], steps[order]
    unordered = set(c[1:][(c[1:] == c[:-1]) & (s[1:] <= s[:-1])].tolist())
    bounds = np.searchsorted(c, np.arange(len(names) + 1)).tolist()
    return [(name, order[bounds[i]:bounds[i + 1]], i not in unordered) for i, name in enumerate(names)]
