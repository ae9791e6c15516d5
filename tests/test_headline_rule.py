"""The headline rule (``models.selection.headline_of``) against the best single method: a dominated method gets
no weight, a stack of complementary methods keeps them all, and on the shared real verl runs the replayed
headline is within noise of the best single method at every grid fraction (``models.selection.gap_to``, the
verdict ``bench/backtest.py`` prints)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from models import selection
from models.backtest import GRID

ROOT = Path(__file__).resolve().parents[1]


def _table(errors: np.ndarray, methods: tuple[str, ...]) -> selection.Table:
    n = len(errors)
    obs = np.linspace(0.6, 0.8, n)
    return selection.Table(tuple(range(n)), (None,) * n, methods, obs[:, None] + errors,
                           np.full(errors.shape, 0.01), np.full(errors.shape, np.nan), obs, np.zeros(n), np.ones(n))


def _loro_mae(table: selection.Table) -> float:
    heads = selection.loro_headlines(table)
    return float(np.mean(np.abs(np.array([h.predicted for h in heads]) - table.observed)))


def test_a_method_beaten_on_every_finished_run_gets_no_weight():
    # every method misses low (as on the shared verl runs); the law is always closest, last value always further
    errors = np.column_stack([-np.array([1.3, 1.1, 0.9, 0.7]), -np.array([3.4, 3.3, 2.1, 1.5])]) / 100
    table = _table(errors, ("law", "last_value"))
    head = selection.headline_of(table, table.predicted[0], table.scale[0], table.rolling_mae[0], 0.0, 1.0, [1, 2, 3])
    assert head.weights == {"law": 1.0}
    assert head.excluded["last_value"] == "dominated: law was closer on every one of the 3 finished runs both forecast"
    assert head.predicted == pytest.approx(table.predicted[0, 0])
    assert _loro_mae(table) == pytest.approx(np.mean(np.abs(errors[:, 0])))
    # the old weights (1/MAE²) gave last value 13% and a headline 0.27 pt further off than the law on run 0
    w = 1 / np.mean(np.abs(errors[1:]), axis=0) ** 2
    assert abs((w / w.sum()) @ errors[0]) > abs(errors[0, 0]) + 0.002


def test_complementary_methods_are_stacked_and_beat_each_one():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 0.01, 12)
    b = -a + rng.normal(0, 0.004, 12)  # errors on opposite sides: neither dominates, their mean cancels
    table = _table(np.column_stack([a, b]), ("law", "saturating"))
    heads = selection.loro_headlines(table)
    assert all(set(h.weights) == {"law", "saturating"} and not h.excluded for h in heads)
    assert _loro_mae(table) < 0.5 * min(np.mean(np.abs(a)), np.mean(np.abs(b)))


def test_too_few_shared_runs_never_count_as_dominance():
    errors = np.column_stack([-np.array([1.0, 1.0, 1.0]), -np.array([2.0, 2.0, 2.0])]) / 100
    table = _table(errors, ("law", "last_value"))
    head = selection.headline_of(table, table.predicted[0], table.scale[0], table.rolling_mae[0], 0.0, 1.0, [1, 2])
    assert set(head.weights) == {"law", "last_value"}  # 2 runs: weights from their MAEs, nobody dropped


def test_the_gap_is_a_one_sided_paired_t_test():
    g = selection.gap_to(np.array([0.02, 0.03, 0.04, 0.05]), np.array([0.01, 0.01, 0.01, 0.01]))
    se = np.std([0.01, 0.02, 0.03, 0.04], ddof=1) / 2
    assert (g.gap, g.se, g.n) == (pytest.approx(0.025), pytest.approx(se), 4)
    assert g.bound == pytest.approx(2.3533634 * se)  # t(0.95; 3)
    assert not g.within_noise
    assert selection.gap_to(np.array([0.02, 0.01, 0.03]), np.array([0.01, 0.02, 0.01])).within_noise
    assert selection.gap_to(np.array([0.05]), np.array([0.01])).bound == float("inf")  # one run: no verdict


def _bench():
    spec = importlib.util.spec_from_file_location("bench_backtest", ROOT / "bench" / "backtest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_on_the_shared_verl_runs_the_headline_is_within_noise_of_the_best_method_at_every_fraction(shared_data):
    from analysis.forecasting import backtest_at

    bench = _bench()
    results = bench.results_of(bench.real_set(), list(GRID))
    seen = 0
    for f in GRID:
        bt = backtest_at(results, f)
        if bt.summary is None:
            continue
        seen += 1
        k = bt.table.methods.index(bt.summary.best_method)
        g = selection.gap_to(np.array([h.predicted for h in bt.headlines]) - bt.table.observed, bt.table.errors[:, k])
        assert g.within_noise, (f"at {f:.0%} the headline is {100 * g.gap:.2f} pt worse than {bt.summary.best_method}"
                                f" (noise bound {100 * g.bound:.2f} pt)")
    assert seen == len(GRID)
