"""Values the fits cannot use are stored as missing values and named, never fitted.

One rule for every source, applied before a run is written: a value that is

* not finite (NaN, ±inf) — kept as a missing value (NULL), counted in ``runs`` as non-finite, as always;
* finite but so large that the law cannot use it: ``|v| >= MAX_ABS_VALUE`` (1e100; e^H overflows far
  below that for entropy keys);
* of an entropy key (role ``entropy``, or the source's ``entropy_key``) and outside ``ENTROPY_RANGE``:
  a mean token entropy in nats is >= 0 and below ln(vocabulary size) ≈ 12 for today's vocabularies; 20 nats
  leaves room for any vocabulary (e^20 ≈ 5·10^8 tokens);

is stored as a missing value too — the point exists, its value is NULL, fits and charts skip it — and the
run's notes say so once per key: file, line (when the source has lines), run, key, step, the value and
the reason, with the count of further values of that key set aside. Nothing else in the run changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from db.limits import shown
from db.records import RunData, Series

MAX_ABS_VALUE = 1e100
ENTROPY_RANGE = (0.0, 20.0)


def screen(data: RunData, roles: Mapping[str, str]) -> RunData:
    """``data`` with unusable finite values replaced by NaN and a note per key naming the first of them."""
    out, notes = [], []
    for s in data.series:
        v = s.values
        finite = np.isfinite(v)
        huge = finite & (np.abs(v) >= MAX_ABS_VALUE)
        bad = huge.copy()
        if roles.get(s.key) == "entropy":
            bad |= finite & ((v < ENTROPY_RANGE[0]) | (v > ENTROPY_RANGE[1]))
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
        out.append(Series(s.key, s.steps, vals, s.wall_times, s.lines))
    if not notes:
        return data
    return replace(data, series=tuple(out), notes=(*data.notes, *notes))
