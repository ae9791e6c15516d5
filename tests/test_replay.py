"""The cross-run model never extrapolates, an outlying method gets no weight, and the replay grid and its
interpolation (the track record quoted at a run's own fraction)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.forecasting import track_at
from models import crossrun, selection
from models.backtest import GRID, bracket


def _points(n: int = 12, horizon: float = 1.857, jitter: float = 0.002, seed: int = 0) -> list[crossrun.RunPoint]:
    """Finished runs replayed at one fraction: every one has (almost) the same horizon_ratio, as at 35%."""
    rng = np.random.default_rng(seed)
    pts = []
    for _ in range(n):
        level = rng.uniform(0.5, 0.8)
        gain = rng.uniform(0.02, 0.15)
        feats = {"gain_saturating": gain + rng.normal(0, 0.01), "gain_sigmoid": gain, "gain_power": gain * 1.1,
                 "gain_law": gain * 0.9, "slope_gain": gain * 0.5, "entropy_spent": rng.uniform(0.3, 0.7),
                 "horizon_ratio": horizon + rng.normal(0, jitter)}
        pts.append(crossrun.RunPoint(feats, level, 0.0, 1.0, 0.05, observed=level + gain))
    return pts


def test_a_feature_without_training_spread_is_dropped_and_cannot_move_a_live_forecast():
    train = _points()
    model = crossrun.fit(train)
    assert "horizon_ratio" in model.dropped
    live = train[0]
    # the same run seen at 37% instead of 35%: its horizon_ratio is 1.70, 80 training spreads away
    moved = crossrun.RunPoint({**live.features, "horizon_ratio": 1.70}, live.level, 0.0, 1.0, 0.05)
    at_grid = crossrun.RunPoint({**live.features}, live.level, 0.0, 1.0, 0.05)
    assert model.predict(moved) == pytest.approx(model.predict(at_grid), abs=1e-12)
    assert abs(model.predict(moved) - (live.level + live.features["gain_sigmoid"])) < 0.1


def test_standardised_features_are_clipped_to_the_training_range():
    train = _points(jitter=0.2)  # a real spread: kept
    model = crossrun.fit(train)
    assert "horizon_ratio" not in model.dropped
    live = train[3]
    far = crossrun.RunPoint({**live.features, "horizon_ratio": 50.0}, live.level, 0.0, 1.0, 0.05)
    top = max(p.features["horizon_ratio"] for p in train)
    edge = crossrun.RunPoint({**live.features, "horizon_ratio": top}, live.level, 0.0, 1.0, 0.05)
    assert model.predict(far) == pytest.approx(model.predict(edge), abs=1e-12)


def _table(n: int = 10) -> selection.Table:
    rng = np.random.default_rng(1)
    obs = rng.uniform(0.6, 0.9, n)
    methods = ("law", "saturating", "last_value", "cross_run")
    pred = obs[:, None] + rng.normal(0, 0.01, (n, len(methods)))
    return selection.Table(tuple(range(n)), (None,) * n, methods, pred, np.full((n, len(methods)), 0.01),
                           np.full((n, len(methods)), np.nan), obs, np.zeros(n), np.ones(n))


def test_a_method_far_outside_the_others_is_named_and_gets_no_weight():
    table = _table()
    pred = np.array([0.93, 0.945, 0.92, 0.109])  # the cross-run model far below the rest (the reported case)
    head = selection.headline_of(table, pred, np.full(4, 0.01), np.full(4, np.nan), 0.0, 1.0, list(range(10)))
    assert "cross_run" not in head.weights and "outlier" in head.excluded["cross_run"]
    assert 0.92 <= head.predicted <= 0.945
    # within its replayed error of the others: kept
    near = np.array([0.93, 0.945, 0.92, 0.915])
    head = selection.headline_of(table, near, np.full(4, 0.01), np.full(4, np.nan), 0.0, 1.0, list(range(10)))
    assert head.weights.get("cross_run", 0) > 0 and not head.excluded


def test_a_weak_law_fit_is_never_in_the_headline():
    table = _table()
    pred = np.array([0.93, 0.94, 0.92, 0.93])
    head = selection.headline_of(table, pred, np.full(4, 0.01), np.full(4, np.nan), 0.0, 1.0, list(range(10)),
                                 weak_law=True)
    assert "law" not in head.weights and head.excluded["law"].startswith("weak law fit")


def test_grid_and_bracket():
    assert len(GRID) == 17 and GRID[0] == 0.1 and GRID[-1] == 0.9
    assert bracket(0.37) == (0.35, 0.4, pytest.approx(0.4))
    assert bracket(0.35) == (0.35, 0.35, 0.0)
    assert bracket(0.05)[:2] == (0.1, 0.1) and bracket(0.97)[:2] == (0.9, 0.9)


def test_the_track_record_is_interpolated_at_the_runs_own_fraction():
    def summary(mae: float, cov: float) -> dict:
        return {"n_runs": 8, "scores": {"headline": {"mae": mae, "coverage": cov}, "law": {"mae": 2 * mae,
                                                                                             "coverage": cov}}}
    track = {"0.35": summary(0.02, 0.9), "0.4": summary(0.01, 1.0)}
    rec = track_at(track, 0.37)
    assert rec["mae"] == pytest.approx(0.016) and rec["coverage"] == pytest.approx(0.94)
    assert rec["methods"]["law"]["mae"] == pytest.approx(0.032)
    assert rec["sentence"] == "replayed on 8 finished runs at 37%: MAE 1.60 pt, coverage 94%"
    assert track_at(track, 0.5) is None  # nothing replayed there


def test_a_weak_law_fit_is_flagged_beside_its_ceiling():
    from analysis.run import bounded_law
    from models.metric_range import MetricRange

    unit = MetricRange(0.0, 1.0, "accuracy", "an accuracy")
    law = {"ceiling": 0.993, "ceiling_lo": 0.890, "ceiling_hi": 1.096, "r2": 0.34, "flags": []}  # the reported fit
    out = bounded_law(law, unit, 0.9)
    assert out["ceiling_ci"] == [0.890, 1.0]  # inside the metric's range
    assert out["weak"].startswith("weak fit: R² 0.34 < 0.5") and out["weak"] in out["flags"]
    wide = bounded_law({**law, "r2": 0.9, "ceiling_lo": 0.2, "ceiling_hi": 0.95}, unit, 0.9)
    assert "spans 75% of the metric's range" in wide["weak"]
    assert bounded_law({**law, "r2": 0.9, "ceiling_lo": 0.9, "ceiling_hi": 0.99}, unit, 0.9)["weak"] is None


def test_trl_state_is_finished_only_at_max_steps(tmp_path):
    import json

    from ingest.trl_state import parse_trainer_state

    def state(step: int) -> str:
        path = tmp_path / f"s{step}" / "trainer_state.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"global_step": step, "max_steps": 100,
                                    "log_history": [{"step": 10, "entropy": 0.5, "reward": 0.1}]}))
        return str(path)

    assert parse_trainer_state(state(100)).run.state == "finished"
    assert parse_trainer_state(state(40)).run.state == "unknown"  # a checkpoint: not assumed finished
