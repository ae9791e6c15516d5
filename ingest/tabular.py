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

The readers live in ``ingest.tabular_csv`` and ``ingest.tabular_jsonl``; this module holds what they share
(layouts, the per-run accumulator, the runs they give). Files are read in blocks of whole lines
(``ingest.textfile``) and kept as numpy arrays per (run, key),
never as a Python object per point; clean long-form JSONL goes through pyarrow's JSON reader block by block.
``read_table_from`` resumes at a byte offset with the state a previous read returned (header, layout, line
number): appended lines are parsed on their own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from db.errors import RecordError
from db.limits import check_name, shown
from db.records import RunData, RunInfo, Series
from ingest.errors import IngestError
from ingest.textfile import (
    Block,
    LineReader,
    Tail,
    TextFile,
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

    #: (run, key)s whose one chunk came with ``ordered``: its Series needs no sort, no repeat check
    ordered: set[tuple[str, str]] = field(default_factory=set)

    def add(self, run: str, key: str, steps: np.ndarray, values: np.ndarray, walls: np.ndarray,
            lines: np.ndarray, *, ordered: bool = False) -> None:
        """``ordered``: the caller checked that ``steps`` are int64 steps within the step rule, strictly
        increasing, and ``values``/``walls`` float64, ``lines`` int64."""
        if len(steps):
            parts = self.runs.setdefault(run, {}).setdefault(key, [])
            parts.append((steps, values, walls, lines))
            if ordered and len(parts) == 1:
                self.ordered.add((run, key))
            elif len(parts) == 2:
                self.ordered.discard((run, key))

    def add_long(self, runs: np.ndarray, keys: np.ndarray, steps: np.ndarray, values: np.ndarray,
                 walls: np.ndarray, lines: np.ndarray) -> None:
        """One chunk of long-form rows, grouped by (run, key) with pandas."""
        frame = pd.DataFrame({"r": runs, "k": keys})
        for (run, key), idx in frame.groupby(["r", "k"], sort=False).indices.items():
            self.add(str(run), str(key), steps[idx], values[idx], walls[idx], lines[idx])

    def series(self, run: str, where: str) -> tuple[Series, ...]:
        out = []
        for key, parts in self.runs.get(run, {}).items():
            if (run, key) in self.ordered:  # what Series.build would give: sorted, unique, nothing to drop
                steps, values, walls, lines = parts[0]
                out.append(Series(key, steps, values, walls, lines))
                continue
            steps, values, walls, lines = (np.concatenate([p[i] for p in parts]) for i in range(4))
            out.append(Series.build(key, steps, values, None if np.isnan(walls).all() else walls,
                                    where=where, lines=lines))
        return tuple(out)


def _step_error(where: str, line: int, why: str, key: str | None = None) -> IngestError:
    at = f", key {shown(key)}" if key else ""
    return IngestError(f"{where}, line {line}{at}: {why}")


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


def _kind_note(tf: TextFile, where: str) -> list[str]:
    if tf.kind == "cr":
        return [f"{where}: lines end in CR alone (old Mac line ends): read as lines"]
    if tf.kind == "utf-16":
        return [f"{where}: UTF-16 text (byte-order mark): read as text, whole at every sync (not tailed)"]
    return []


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
            from ingest.tabular_csv import read_csv

            return read_csv(path, resume, end, settled)
        from ingest.tabular_jsonl import read_jsonl

        return read_jsonl(path, resume, end)
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_table(path: str | Path) -> list[RunData]:
    """All runs of one CSV or JSONL file (a file with no data rows has none)."""
    return read_table_from(path).runs
