"""Canonical records: what every source turns its runs into before they reach the store.

``Series.build`` is the one place where raw (step, value, wall_time) triples are checked: steps must be
non-negative integers, values numbers (non-finite ones are kept and counted, never fitted), and a step
seen twice keeps the value with the latest wall time (then the later point), and ``Series.repeats`` says how
many were dropped. Errors name the source, run and key. Steps are integers in [0, 2^53]
(``db.limits.MAX_STEP``), taken as integers only: a float step is refused, never rounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from db.errors import RecordError
from db.limits import MAX_STEP, shown


@dataclass(frozen=True)
class RunInfo:
    external_id: str
    name: str
    project: str | None = None
    status: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None
    algorithm: str | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    #: the run's planned length in steps and where it came from (e.g. "param trainer/total_training_steps")
    planned_steps: int | None = None
    planned_from: str | None = None

    @property
    def state(self) -> str:
        """``status`` as the source said it, normalised: running | finished | failed | unknown."""
        return run_state(self.status)


@dataclass(frozen=True)
class Repeats:
    """Points of one key given at a step already given in the same input: how many were dropped, how many of
    those had a value other than the one kept, and the first such step (with the dropped and kept lines)."""

    dropped: int
    differing: int
    step: int
    dropped_line: int | None = None
    kept_line: int | None = None

    @staticmethod
    def of(steps: np.ndarray, values: np.ndarray, keep: np.ndarray, lines: np.ndarray | None) -> Repeats | None:
        """``steps`` sorted (the last of each run of equal steps is kept, ``keep``)."""
        drop = np.flatnonzero(~keep)
        if not len(drop):
            return None
        kept_at = np.searchsorted(np.flatnonzero(keep), drop)  # the kept point of each dropped one's step
        kept = np.flatnonzero(keep)[kept_at]
        a, b = values[drop], values[kept]
        differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        first = int(drop[np.flatnonzero(differ)[0]]) if differ.any() else int(drop[0])
        k = int(kept[np.searchsorted(drop, first)])
        return Repeats(len(drop), int(differ.sum()), int(steps[first]),
                       None if lines is None else int(lines[first]), None if lines is None else int(lines[k]))


@dataclass(frozen=True, eq=False)
class Series:
    """One metric of one run: sorted unique int64 steps, float64 values (NaN/inf allowed), wall times."""

    key: str
    steps: np.ndarray
    values: np.ndarray
    wall_times: np.ndarray  # float64 unix seconds, NaN where unknown
    #: the source line of each point (file sources), for messages that name it; None when not known
    lines: np.ndarray | None = None
    #: points dropped because their step was given again in the same input (None: no step was)
    repeats: Repeats | None = None

    def __len__(self) -> int:
        return len(self.steps)

    @classmethod
    def build(
        cls,
        key: str,
        steps: Sequence[Any] | np.ndarray,
        values: Sequence[Any] | np.ndarray,
        wall_times: Sequence[Any] | np.ndarray | None = None,
        *,
        where: str = "",
        lines: Sequence[int] | np.ndarray | None = None,
    ) -> Series:
        """Validate and normalise raw points; ``where`` (file, run) is put into every error message.
        ``lines`` (optional) are the source lines of the points, kept alongside them."""
        at = f"{where}, key {shown(key)}" if where else f"key {shown(key)}"
        n = len(steps)
        if len(values) != n or (wall_times is not None and len(wall_times) != n):
            raise RecordError(f"{at}: steps, values and wall times differ in length")
        vals = np.asarray(values)
        if vals.dtype.kind not in "fiu":  # strings, booleans, None or mixed objects: name the first bad one
            bad = next((v for v in values if not _is_number(v)), None)
            if bad is not None or vals.dtype.kind != "O":
                raise RecordError(f"{at}: value {shown(bad)} is not a number")
        vals = vals.astype(np.float64)
        st = _int_steps(steps, at)
        wt = (
            np.full(n, np.nan)
            if wall_times is None
            else np.asarray([np.nan if w is None else w for w in wall_times], dtype=np.float64)
        )
        # sort by step, then wall time (unknown first), then arrival; keep the last of each step
        order = np.lexsort((np.arange(n), np.nan_to_num(wt, nan=-np.inf), st))
        st, vals, wt = st[order], vals[order], wt[order]
        keep = np.ones(n, dtype=bool)
        if n:
            keep[:-1] = st[1:] != st[:-1]
        all_lines = None if lines is None else np.asarray(lines, dtype=np.int64)[order]
        repeats = Repeats.of(st, vals, keep, all_lines)
        ln = None if all_lines is None else all_lines[keep]
        return cls(key=key, steps=st[keep], values=vals[keep], wall_times=wt[keep], lines=ln, repeats=repeats)

    def after(self, step: int | None) -> Series:
        """The points with step > ``step`` (all of them when ``step`` is None)."""
        if step is None:
            return self
        m = self.steps > step
        return Series(self.key, self.steps[m], self.values[m], self.wall_times[m],
                      None if self.lines is None else self.lines[m], self.repeats)


@dataclass(frozen=True)
class FileState:
    """What a file source read of one file (table ``file_state``): saved with the points it gave, so a
    later sync parses only what was appended (see ``ingest.tailing``)."""

    path: str  # resolved path
    size: int
    mtime: float
    inode: int | None
    head_sha: str  # sha256 of the file's first bytes (parser_state["head_len"] of them)
    offset: int  # bytes parsed, up to the end of the last complete record
    parser_state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunData:
    """A run and its metric series as one source read them."""

    run: RunInfo
    series: tuple[Series, ...]
    notes: tuple[str, ...] = ()  # e.g. "torn record at byte 1234: read 812 complete records before it"
    #: every metric name the source has for this run, including keys it did not fetch (default: the series')
    keys_seen: tuple[str, ...] | None = None
    #: the file the run was read from (file sources), named in messages
    origin: str | None = None
    #: a tail read (only what was appended to a file): keys_seen and notes are merged into the stored ones
    partial: bool = False
    #: said to the user about this read only (e.g. a torn last line left for the next sync); not stored
    notices: tuple[str, ...] = ()
    #: file read positions written in the same transaction as this run's points
    file_states: tuple[FileState, ...] = ()

    def all_keys(self) -> tuple[str, ...]:
        return tuple(self.keys_seen) if self.keys_seen is not None else tuple(s.key for s in self.series)


RUN_STATES = ("running", "finished", "failed", "unknown")
_STATE_WORDS = {
    "running": "running", "scheduled": "running", "pending": "running",  # MLflow, W&B
    "finished": "finished", "complete": "finished", "completed": "finished",
    "failed": "failed", "killed": "failed", "crashed": "failed", "preempted": "failed",
}


def run_state(status: str | None) -> str:
    """A source's run status (MLflow RUNNING/FINISHED/FAILED/KILLED, W&B running/finished/crashed/…) as one
    of ``RUN_STATES``; anything else, or no status (a file), is ``unknown``."""
    return _STATE_WORDS.get(str(status or "").strip().lower(), "unknown")


#: parameters that state a run's planned number of steps, most explicit first (names compared with "/" for
#: any of "/", "." separators): verl (its config as flattened MLflow params / W&B config), TRL / transformers
PLANNED_STEP_PARAMS = ("trainer/total_training_steps", "actor_rollout_ref/actor/optim/total_training_steps",
                       "max_steps", "total_training_steps", "num_training_steps", "total_steps")


def planned_length(params: Mapping[str, Any] | None) -> tuple[int | None, str | None]:
    """The planned number of steps a run's params state, and the param that said it; (None, None) when none
    does (verl leaves ``total_training_steps`` unset or −1 unless the user sets it; transformers' ``max_steps``
    is −1 when training is by epochs)."""
    norm = {str(k).replace(".", "/").lower(): (k, v) for k, v in (params or {}).items()}
    for want in PLANNED_STEP_PARAMS:
        for name, (orig, value) in norm.items():
            if name == want or name.endswith("/" + want):
                try:
                    n = int(float(str(value)))
                except (TypeError, ValueError):
                    continue
                if n > 0:
                    return n, f"param {orig}"
    return None, None


def _is_number(v: Any) -> bool:
    if v is None or isinstance(v, str | bytes | bool):
        return False
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _int_steps(steps: Sequence[Any] | np.ndarray, at: str) -> np.ndarray:
    """Steps as int64, exactly: integers in [0, MAX_STEP]; a float, a string or a bool is refused (a float
    may already have lost digits: every source reads its steps as integers, ``ingest.steps``)."""
    arr = np.asarray(steps) if not isinstance(steps, np.ndarray) else steps
    if not len(arr):
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind == "i":
        st = arr.astype(np.int64)
    elif arr.dtype.kind == "u":
        if arr.max() > MAX_STEP:
            raise RecordError(f"{at}: step {int(arr.max())} is too large; steps must be at most 2^53 ({MAX_STEP})")
        st = arr.astype(np.int64)
    else:
        items = list(steps)
        bad = next((s for s in items if isinstance(s, bool) or not isinstance(s, int | np.integer)), None)
        if bad is not None or not items:
            raise RecordError(f"{at}: step {shown(bad)} is not an integer")
        big = next((s for s in items if s > MAX_STEP), None)
        if big is not None:
            raise RecordError(f"{at}: step {shown(big)} is too large; steps must be at most 2^53 ({MAX_STEP})")
        st = np.asarray([int(s) for s in items], dtype=np.int64)
    if st.min() < 0:
        raise RecordError(f"{at}: negative step {int(st.min())}; steps must be >= 0")
    if st.max() > MAX_STEP:
        raise RecordError(f"{at}: step {int(st.max())} is too large; steps must be at most 2^53 ({MAX_STEP})")
    return st
