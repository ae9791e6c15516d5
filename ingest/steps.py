"""Steps: one rule for every format, read exactly (never through floating point).

A step is an integer in [0, ``MAX_STEP``] (2^53 = 9007199254740992, the same on SQLite and PostgreSQL: see
``db.limits``), written as an integer:

* in text (CSV cells, JSON strings, verl ``step:N``): digits, optionally a leading ``+``, spaces around them
  ignored — ``7``, `` 7 ``, ``+8`` are steps 7, 7 and 8;
* in JSON (JSONL, ``trainer_state.json``, W&B's ``_step``): an integer number, or a string holding one;
* in TensorBoard and MLflow: the integer the format stores.

Anything else is refused, naming the line: a fraction or an exponent even when the value is whole (``1.0``,
``1e3``: a float may already have lost digits), digit separators (``1_000``), hexadecimal, a negative step,
one above ``MAX_STEP``, an empty or missing step.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from db.limits import MAX_STEP, shown

if TYPE_CHECKING:  # pandas only for the CSV reader's columns: a re-sync that reads nothing never imports it
    import pandas as pd

#: the rule in one line, quoted by every step error
RULE = "steps are integers written with digits (7, +8), from 0 to 2^53"
_INTEGER = re.compile(r"\s*\+?([0-9]+)\s*")


class StepError(ValueError):
    """A step that breaks the rule; the message says what was given and why (no location)."""


def _check_range(step: int, given: Any) -> int:
    if step < 0:
        raise StepError(f"step {shown(given)}; steps must be >= 0")
    if step > MAX_STEP:
        raise StepError(f"step {shown(given)}; steps must be at most 2^53 ({MAX_STEP})")
    return step


def step_from_text(text: str) -> int:
    """The step written in ``text`` (a CSV cell, a JSON string), by the rule above."""
    m = _INTEGER.fullmatch(text) if len(text) < 200 else None
    if m is None:
        t = text.strip()
        if t.startswith("-") and _INTEGER.fullmatch(t[1:]):
            raise StepError(f"step {t}; steps must be >= 0")
        raise StepError(f"step {shown(text)} is not an integer; {RULE}" if text.strip() else
                        f"missing step; {RULE}")
    return _check_range(int(m[1]), text.strip())


def step_from_json(value: Any) -> int:
    """A step as JSON gave it: an integer number, or a string holding one."""
    if type(value) is int:
        return _check_range(value, value)
    if isinstance(value, str):
        return step_from_text(value)
    if value is None:
        raise StepError(f"missing step; {RULE}")
    raise StepError(f"step {shown(value)} is not an integer; {RULE}")


def steps_from_column(col: pd.Series) -> tuple[np.ndarray, int | None, str]:
    """A column of steps read by pandas as text (CSV) → int64, or the index of its first bad entry and why."""
    if col.dtype.kind in "iu":
        arr = col.to_numpy()
        bad = np.flatnonzero((arr < 0) | (arr > MAX_STEP)) if arr.dtype.kind == "i" else np.flatnonzero(
            arr > MAX_STEP)
        if len(bad):
            i = int(bad[0])
            try:
                _check_range(int(arr[i]), int(arr[i]))
            except StepError as exc:
                return np.empty(0, np.int64), i, str(exc)
        return arr.astype(np.int64), None, ""
    import pandas as pd  # the column is a pandas one: pandas is loaded already

    out = np.empty(len(col), dtype=np.int64)
    for i, v in enumerate(col.to_numpy(dtype=object)):
        try:
            out[i] = step_from_text("" if v is None or v is pd.NA or v != v else str(v))
        except StepError as exc:
            return np.empty(0, np.int64), i, str(exc)
    return out, None, ""
