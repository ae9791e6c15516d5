"""Plain values: a number as a finite float or None, and a JSON-safe copy of anything a result holds.

The store writes NaN and ±inf as NULL and results as strict JSON; every ``--json`` document and report does
the same, through these two functions (they live here, at the bottom of the layers, so that every layer
above may use them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np


def finite_number(v: Any) -> float | None:
    """``v`` as a finite float, or None (missing, not a number, a bool, NaN or ±inf)."""
    if v is None or isinstance(v, bool | np.bool_):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def json_safe(obj: Any) -> Any:
    """A strict-JSON copy: mappings with string keys, tuples and arrays as lists, numpy scalars as Python
    numbers, NaN and ±inf as None, datetimes in ISO 8601, anything else as its ``str``."""
    kind = type(obj)  # the plain types a result is made of first: an isinstance chain costs more than the copy
    if kind is float:
        return obj if math.isfinite(obj) else None
    if kind is str or kind is int or kind is bool or obj is None:
        return obj
    if kind is dict:
        return {k if type(k) is str else str(k): json_safe(v) for k, v in obj.items()}
    if kind is list:
        return [json_safe(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_safe(v) for v in obj.tolist()]
    if isinstance(obj, bool | str) or obj is None:
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer | int):
        return int(obj)
    if isinstance(obj, np.floating | float):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, datetime):
        return obj.isoformat()
    return str(obj)
