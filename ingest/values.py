"""Values the fits cannot use are stored as missing values and named, never fitted.

One rule for every source, applied before a run is written: a value that is

* not finite (NaN, ±inf) — kept as a missing value (NULL), counted in ``runs`` as non-finite, as always, and
  named in the run's notes once per key (how many, the first step and line);
* finite but so large that the law cannot use it: ``|v| >= MAX_ABS_VALUE`` (1e100; e^H overflows far
  below that for entropy keys);
* of an entropy key (role ``entropy``, or the source's ``entropy_key``) and outside ``ENTROPY_RANGE``:
  a mean token entropy in nats is >= 0 and below ln(vocabulary size) ≈ 12 for today's vocabularies; 20 nats
  leaves room for any vocabulary (e^20 ≈ 5·10^8 tokens);

is stored as a missing value too — the point exists, its value is NULL, fits and charts skip it — and the
run's notes say so once per key: file, line (when the source has lines), run, key, step, the value and
the reason, with the count of further values of that key set aside. Nothing else in the run changes.

A (run, key, step) given more than once in one input keeps one point (``REPEAT_RULE``) and the run's notes
say so once per key: how many points were dropped, how many of them differed from the kept value, and the
first such step with its lines (``ingest file --strict`` refuses such a file instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from db.limits import shown
from db.records import RunData, Series

MAX_ABS_VALUE = 1e100
ENTROPY_RANGE = (0.0, 20.0)


REPEAT_RULE = "the one with the latest wall time is kept, else the later one"


def repeat_note(data: RunData, s: Series) -> str | None:
    """The note for points of ``s`` given at a step ``s`` already had in the same input (``Series.repeats``)."""
    r = s.repeats
    if r is None:
        return None
    where = data.origin or data.run.external_id
    lines = f", lines {r.dropped_line} and {r.kept_line}" if r.dropped_line and r.kept_line else ""
    return (f"{where}, run {shown(data.run.name, 80)}, key {shown(s.key, 80)}: {r.dropped} point(s) given at a "
            f"step already given ({r.differing} with a different value; first at step {r.step}{lines}): "
            f"{REPEAT_RULE}")


def screen(data: RunData, roles: Mapping[str, str]) -> RunData:
    """``data`` with unusable finite values replaced by NaN and a note per key naming the first of them, and a
    note per key that was given twice at a step (``repeat_note``)."""
    out: list[Series] = []
    notes = [n for s in data.series if (n := repeat_note(data, s))]
    for s in data.series:
        v = s.values
        finite = np.isfinite(v)
        huge = finite & (np.abs(v) >= MAX_ABS_VALUE)
        bad = huge.copy()
        if roles.get(s.key) == "entropy":
            bad |= finite & ((v < ENTROPY_RANGE[0]) | (v > ENTROPY_RANGE[1]))
        if (~finite).any():  # NaN / ±inf as the source gave them: kept as missing values, said once per key
            j = int(np.flatnonzero(~finite)[0])
            line = int(s.lines[j]) if s.lines is not None and s.lines[j] > 0 else None
            where = data.origin or data.run.external_id
            n_bad = int((~finite).sum())
            notes.append(f"{where}{f', line {line}' if line else ''}, run {shown(data.run.name, 80)}, key "
                         f"{shown(s.key, 80)}: {n_bad} value(s) NaN or ±inf (first at step {int(s.steps[j])}: "
                         f"{float(v[j])}): stored as missing values, excluded from fits")
        if not bad.any():
            out.append(s)
            continue
        idx = np.flatnonzero(bad)
        i = int(idx[0])
        reason = ("is too large to use (|value| >= 1e100)" if huge[i] else
                  f"is outside the plausible range of a mean token entropy ({ENTROPY_RANGE[0]:g} to "
                  f"{ENTROPY_RANGE[1]:g} nats)")
        line = int(s.lines[i]) if s.lines is not None and s.lines[i] > 0 else None
        where = data.origin or data.run.external_id
        at = f"{where}{f', line {line}' if line else ''}, run {shown(data.run.name, 80)}, key {shown(s.key, 80)}, "
        more = f" (and {len(idx) - 1} more values of this key)" if len(idx) > 1 else ""
        notes.append(f"{at}step {int(s.steps[i])}: value {float(v[i]):.6g} {reason}: stored as a missing value, "
                     f"excluded from fits{more}")
        vals = v.copy()
        vals[idx] = np.nan
        out.append(replace(s, values=vals))
    if not notes:
        return data
    return replace(data, series=tuple(out), notes=(*data.notes, *notes))
