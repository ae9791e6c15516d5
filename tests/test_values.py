"""The one home of each small idea: interval quantiles (``models.intervals``), finite numbers and the JSON
cleaner every document goes through (``db.values``)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pytest
from scipy import stats

from db.values import finite_number, json_safe
from models.intervals import DEFAULT_CONFIDENCE, Z95, t_quantile


def test_interval_quantiles():
    assert DEFAULT_CONFIDENCE == 0.95
    assert stats.norm.ppf(0.975) == pytest.approx(Z95, abs=1e-12)
    assert t_quantile(10) == pytest.approx(stats.t.ppf(0.975, 10))
    assert t_quantile(3, 0.9) == pytest.approx(stats.t.ppf(0.95, 3))
    assert t_quantile(0) == t_quantile(1) == pytest.approx(12.7062047)  # at least one degree of freedom
    assert t_quantile(100_000) == pytest.approx(Z95, abs=1e-4)


@pytest.mark.parametrize(("value", "number"), [
    (1, 1.0), (np.float32(0.5), 0.5), (np.int64(3), 3.0), ("2.5", 2.5), (None, None), (True, None),
    (np.bool_(True), None), (math.nan, None), (-math.inf, None), ("x", None), ([1], None),
])
def test_finite_number(value, number):
    assert finite_number(value) == number


def test_json_safe_gives_strict_json():
    obj = {1: [math.nan, np.float64(0.25), np.int32(4), (np.inf, "s")], "a": np.array([1.5, np.nan]),
           "b": np.bool_(False), "t": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "o": object.__name__}
    out = json_safe(obj)
    assert out == {"1": [None, 0.25, 4, [None, "s"]], "a": [1.5, None], "b": False,
                   "t": "2026-01-02T03:04:05+00:00", "o": "object"}
    assert json.loads(json.dumps(out, allow_nan=False)) == out
