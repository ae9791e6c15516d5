"""Forecasts: the curve fitter, every method on runs whose answer is known, the backtest protocol, the
cross-run model and the stacked, conformally calibrated headline (never trained on the run it predicts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import crossrun, selection
from models.backtest import backtest_run
from models.curves import PrefixData, fit_curve, fit_prefixes, fit_prefixes_many
from models.errors import FitError
from models.forecast import METHODS, forecast, forecast_many
from models.intervals import Z95
from models.metric_range import MetricRange
from tests import analyses

UNIT = MetricRange(0.0, 1.0, "accuracy", "")


def _run(seed: int = 0, n_steps: int = 600, every: int = 10, a: float = 0.3, b: float = 1.1, noise: float = 0.004,
         decay: float = 80.0):
    rng = np.random.default_rng(seed)
    hs = np.arange(1, n_steps + 1, dtype=float)
    hv = 0.05 + 0.8 * (hs / decay + 1) ** -0.7 + rng.normal(0, 0.005, n_steps)
    ps = np.arange(0, n_steps + 1, every, dtype=float)
    pv = b - a * np.exp(0.05 + 0.8 * ((ps + 1) / decay + 1) ** -0.7) + rng.normal(0, noise, len(ps))
    return hs, hv, ps, pv


# ------------------------------------------------------------------------------------------ curves
@pytest.mark.parametrize("family,truth", [
    ("saturating", lambda t: 0.8 - 0.5 * np.exp(-t / 300)),
    ("power", lambda t: 0.8 - 2.0 * (t + 100) ** -0.5),
    ("sigmoid", lambda t: 0.2 + 0.6 / (1 + (400 / (t + 1)) ** 1.6)),
])
def test_each_curve_family_recovers_its_own_shape(family, truth):
    s = np.arange(0, 1500, 10.0)
    rng = np.random.default_rng(0)
    fit = fit_curve(family, s, truth(s) + rng.normal(0, 0.003, len(s)), lo=0, hi=1)
    assert fit.rmse < 0.0045
    later = np.array([2000.0, 3000.0])
    assert np.abs(fit.predict(later) - truth(later)).max() < 0.02


def test_asymptote_stays_in_the_range():
    s = np.arange(0, 300, 10.0)
    steep = 0.5 + 0.002 * s  # a straight line would pass 1 at step 250
    for family in ("saturating", "sigmoid", "power"):
        fit = fit_curve(family, s, steep, lo=0, hi=1)
        assert fit.asymptote <= 1.0 + 1e-12, family


def test_prefix_fits_fit_their_prefix_as_well_as_a_fit_of_it_alone():
    s = np.arange(0, 1000, 10.0)
    y = 0.7 - 0.4 * np.exp(-s / 200) + np.random.default_rng(1).normal(0, 0.01, len(s))
    fits = fit_prefixes("saturating", s, y, [30, 60, 99], lo=0, hi=1)
    for i, k in enumerate((30, 60, 99)):
        alone = fit_curve("saturating", s[: k + 1], y[: k + 1], lo=0, hi=1)
        assert fits.fit(i).n == k + 1
        assert fits.fit(i).rmse == pytest.approx(alone.rmse, rel=0.02)  # the grids differ with the span only
        assert np.allclose(fits.predict_points(i)[: k + 1], alone.predict(s[: k + 1]), atol=0.01)


@pytest.mark.parametrize("family", ["saturating", "sigmoid", "power", "decay"])
def test_curves_fitted_in_one_batch_are_the_curves_fitted_alone(family):
    rng = np.random.default_rng(3)
    curves = []
    for n in (5, 12, 37, 80, 150):  # different lengths, origins and bounds in one batch; the first too short
        s = np.sort(rng.choice(np.arange(1, 3000), n, replace=False)).astype(float)
        y = 0.1 + 0.9 * np.exp(-s / rng.uniform(200, 900)) + rng.normal(0, 0.02, n)
        origins = sorted({max(0, n // 2), max(0, n - 5), n - 1})
        curves.append(PrefixData(s, y, origins, 0.0, np.full(len(origins), 0.5) if family == "decay" else 1.0))
    batch = fit_prefixes_many(family, curves, refine_last_only=True)
    with pytest.raises(FitError, match="needs at least") as alone_error:
        fit_prefixes(family, curves[0].steps, curves[0].values, curves[0].origins, lo=0.0, hi=curves[0].hi)
    assert isinstance(batch[0], FitError) and str(batch[0]) == str(alone_error.value)
    for c, fits in zip(curves[1:], batch[1:], strict=True):
        alone = fit_prefixes(family, c.steps, c.values, c.origins, lo=c.lo, hi=c.hi, refine_last_only=True)
        assert list(fits.grid_index) == list(alone.grid_index)
        for i in range(len(c.origins)):
            assert fits.fit(i).params == pytest.approx(alone.fit(i).params, rel=1e-9, abs=1e-12)
            assert np.allclose(fits.predict_points(i), alone.predict_points(i), rtol=1e-9, atol=1e-12)


def test_a_curve_is_never_fitted_on_fewer_points_than_parameters_plus_two():
    s = np.arange(0, 50, 10.0)
    with pytest.raises(FitError, match="needs at least 6 points"):
        fit_curve("power", s, np.linspace(0.2, 0.5, len(s)))


# ------------------------------------------------------------------------------------------ methods
def test_every_method_forecasts_a_law_following_run():
    hs, hv, ps, pv = _run()
    fc = forecast(hs, hv, ps, pv, cutoff_step=180, target_steps=ps[-3:], rng=UNIT)
    truth = float(np.mean(pv[-3:]))
    assert set(fc.methods) == set(METHODS)
    assert abs(fc.methods["law"].predicted - truth) < 0.01  # the law knows the shape of this run
    for m in ("saturating", "sigmoid", "power"):  # curves in the step only approximate it
        assert abs(fc.methods[m].predicted - truth) < 0.1, m
    assert fc.methods["last_value"].predicted == pytest.approx(pv[ps <= 180][-1])
    assert fc.methods["recent_mean"].predicted == pytest.approx(pv[ps <= 180][-3:].mean())
    for m in fc.methods.values():
        assert 0.0 <= m.predicted <= 1.0 and m.scale > 0 and m.rolling_mae is not None
    assert fc.features["entropy_spent"] > 0.3 and fc.features["gain_law"] > 0


def test_forecasts_never_leave_the_metric_range():
    hs, hv, ps, pv = _run(a=0.05, b=1.04)  # near 1 already
    fc = forecast(hs, hv, ps, pv, cutoff_step=200, target_steps=[5000], rng=UNIT)
    for m in fc.methods.values():
        assert m.predicted <= 1.0 and np.all(m.path <= 1.0)


def test_the_warmup_before_the_cutoff_is_left_out_of_every_forecast():
    hs, hv, ps, pv = _run()
    pv = pv.copy()
    pv[0] = 0.05
    fc = forecast(hs, hv, ps, pv, cutoff_step=180, target_steps=ps[-3:], rng=UNIT)
    assert fc.warmup.steps == (0,) and fc.n_evaluations == int((ps <= 180).sum()) - 1
    kept = forecast(hs, hv, ps, pv, cutoff_step=180, target_steps=ps[-3:], rng=UNIT, warmup="keep")
    assert kept.warmup.n == 0 and kept.n_evaluations == fc.n_evaluations + 1


def test_forecasts_at_many_cuts_in_one_batch_are_the_forecasts_at_each_cut_alone():
    hs, hv, ps, pv = _run(n_steps=2000, every=20)
    pv = pv.copy()
    pv[0] = 0.05  # a warm-up, detected at each cut
    cuts = [(25, [2000]), (190, [2000]), (610, [1500, 2000]), (1210, [2000]), (1790, [1900, 2000])]
    batch = forecast_many(hs, hv, ps, pv, cuts, rng=UNIT)
    with pytest.raises(FitError, match="only 2 evaluations at or before step 25") as alone_error:  # too early
        forecast(hs, hv, ps, pv, cutoff_step=25, target_steps=[2000], rng=UNIT)
    assert isinstance(batch[0], FitError) and str(batch[0]) == str(alone_error.value)
    for (cut, target), fc in zip(cuts[1:], batch[1:], strict=True):
        alone = forecast(hs[hs <= cut], hv[hs <= cut], ps[ps <= cut], pv[ps <= cut], cutoff_step=cut,
                         target_steps=target, rng=UNIT)
        assert fc.warmup == alone.warmup and fc.n_evaluations == alone.n_evaluations and set(fc.methods) == set(METHODS)
        assert fc.failed == alone.failed and fc.features == pytest.approx(alone.features, rel=1e-9)
        for m, f in fc.methods.items():
            a = alone.methods[m]
            assert (f.predicted, f.scale, f.rolling_mae) == pytest.approx((a.predicted, a.scale, a.rolling_mae),
                                                                          rel=1e-9), m
            assert f.note == a.note and f.params == pytest.approx(a.params, rel=1e-9), m


def test_too_few_evaluations_before_the_cutoff_say_so():
    hs, hv, ps, pv = _run()
    with pytest.raises(FitError, match="only 3 evaluations") as err:
        forecast(hs, hv, ps, pv, cutoff_step=25, target_steps=[500], rng=UNIT)
    assert err.value.cause == "too_few_points_before_cutoff"


def test_backtest_protocol():
    hs, hv, ps, pv = _run()
    bt = backtest_run(hs, hv, ps, pv, cutoff=0.3, rng=UNIT)
    assert bt.cutoff_step == pytest.approx(0.3 * 600)
    assert bt.final_steps == (580, 590, 600) and bt.observed_final == pytest.approx(pv[-3:].mean())
    assert bt.errors["law"] == pytest.approx(bt.forecast.methods["law"].predicted - bt.observed_final)
    with pytest.raises(FitError) as err:
        backtest_run(hs, hv, ps[:3], pv[:3], cutoff=0.9, rng=UNIT)
    assert err.value.cause == "nothing_after_cutoff"


# ------------------------------------------------------------------------------------------ across runs
def _table(errors: dict[str, list[float]], observed: list[float] | None = None) -> selection.Table:
    methods = tuple(errors)
    n = len(next(iter(errors.values())))
    obs = np.array(observed or [0.5] * n)
    pred = np.column_stack([obs + np.array(errors[m]) for m in methods])
    return selection.Table(tuple(range(1, n + 1)), (None,) * n, methods, pred, np.full(pred.shape, 0.01),
                           np.full(pred.shape, np.nan), obs, np.zeros(n), np.ones(n))


def test_headline_weights_are_learned_without_the_run_itself():
    t = _table({"good": [0.01, -0.01, 0.01, -0.01, 0.5], "bad": [0.05, -0.05, 0.05, -0.05, 0.0]})
    heads = selection.loro_headlines(t)
    w = heads[0].weights
    # over runs 2..5 "good" has MAE 0.1325 and "bad" 0.0375: weights ∝ 1/MAE²
    assert w["bad"] / w["good"] == pytest.approx((0.1325 / 0.0375) ** 2)
    # the last run's own huge "good" error does not enter its own weights
    assert heads[4].weights["good"] > 0.9 and heads[4].rule == "finished runs" and heads[4].pool == 4


def test_conformal_multiplier_is_finite_sample_valid_and_says_when_it_is_not_calibrated():
    scores = np.arange(1, 21, dtype=float)  # 20 runs: rank ⌈21·0.95⌉ = 20
    q, calibrated = selection.conformal_q(scores)
    assert q == 20 and calibrated
    q, calibrated = selection.conformal_q(np.array([0.5, 1.0, 3.0]))  # t(2 dof) × RMS
    assert q == pytest.approx(4.302653 * np.sqrt((0.25 + 1 + 9) / 3), rel=1e-5) and not calibrated
    q, _ = selection.conformal_q(np.array([0.1]))
    assert q == pytest.approx(Z95)


def test_summary_sentences_are_true():
    beat = _table({"m1": [0.02, -0.02, 0.02, -0.02], "m2": [-0.02, 0.02, -0.02, 0.02]})
    s = selection.summarise(beat, selection.loro_headlines(beat), 0.3)
    assert s.scores["headline"].mae < s.scores["m1"].mae and s.headline_beat_all
    assert "beat every single method" in s.sentence and f"{100 * s.scores['headline'].mae:.2f} pt" in s.sentence
    # "bad" closer on one run only (so never dominated, and never dropped): its weight costs the headline
    lose = _table({"good": [0.01, 0.01, 0.01, 0.01], "bad": [0.05, 0.05, 0.05, 0.0]})
    s = selection.summarise(lose, selection.loro_headlines(lose), 0.3)
    assert not s.headline_beat_all and s.scores["headline"].mae > s.scores["good"].mae
    assert "good alone did better" in s.sentence and "did not beat every method" in s.sentence


def test_cross_run_model_learns_what_followed_and_never_sees_the_run_it_predicts():
    rng = np.random.default_rng(0)
    points = []
    for _ in range(12):  # every run gains 60% of what its saturating curve predicts, plus noise
        level, gain = rng.uniform(0.3, 0.6), rng.uniform(0.02, 0.2)
        observed = level + 0.6 * gain + rng.normal(0, 0.002)
        points.append(crossrun.RunPoint({"gain_saturating": gain, "entropy_spent": rng.uniform(0.3, 0.9)},
                                        level, 0.0, 1.0, 0.05, observed))
    pred, scale = crossrun.loro(points)
    obs = np.array([p.observed for p in points])
    naive = np.array([p.level + p.features["gain_saturating"] for p in points])
    assert np.mean(np.abs(pred - obs)) < 0.3 * np.mean(np.abs(naive - obs))
    moved = list(points)
    moved[0] = crossrun.RunPoint(points[0].features, points[0].level, 0, 1, 0.05, observed=0.99)
    again, _ = crossrun.loro(moved)
    assert again[0] == pytest.approx(pred[0])  # run 0's own outcome never enters its forecast
    assert not np.isnan(pred).any() and np.all(scale > 0)
    assert np.isnan(crossrun.loro(points[:5])[0]).all()  # too few runs to learn from: no forecast


def test_cross_run_leave_one_out_equals_a_model_fitted_without_each_run():
    """loro reuses every run's design row across its fits; it must give what fitting on the others gives,
    with missing features, bounded and unbounded metrics and two projects."""
    rng = np.random.default_rng(1)
    points, groups = [], []
    for i in range(30):
        feats = {k: (None if rng.random() < 0.15 else float(rng.normal(0.05, 0.05))) for k in crossrun.FEATURES}
        bounded = i % 3 != 0
        level = float(rng.uniform(0.2, 0.8))
        points.append(crossrun.RunPoint(feats, level, 0.0 if bounded else -np.inf, 1.0 if bounded else np.inf,
                                        float(rng.uniform(0.01, 0.1)), level + float(rng.normal(0.05, 0.03))))
        groups.append("a" if i < 20 else "b")
    pred, scale = crossrun.loro(points, groups, min_group=8)
    for i in (0, 7, 19, 20, 29):
        pool = [j for j in range(30) if j != i and groups[j] == groups[i]]  # both projects have ≥ 8 others
        model = crossrun.fit([points[j] for j in pool])
        assert pred[i] == pytest.approx(model.predict(points[i]), abs=1e-12)
        assert scale[i] == pytest.approx(model.rmse, abs=1e-12)
        err = [model.predict(points[j]) - points[j].observed for j in pool]  # rmse: in-sample, metric units
        assert model.rmse == pytest.approx(float(np.sqrt(np.mean(np.square(err)))), abs=1e-12)


def test_stacked_backtest_on_simulated_runs_beats_every_method_and_covers(tmp_path):
    from analysis.forecasting import backtest_at
    from analysis.run import backtest_of

    results = []
    for i in range(14):
        hs, hv, ps, pv = _run(seed=i, a=0.25 + 0.02 * (i % 5), b=1.05 + 0.01 * (i % 3), decay=60 + 10 * (i % 4),
                              noise=0.006)
        h, r = pd.Series(hv, index=hs.astype(int)), pd.Series(pv, index=ps.astype(int))
        results.append(analyses.analysis(run_id=i + 1, run=f"r{i}", project="p", status="ok", entropy_key="h",
                                         finished=True, range=UNIT.to_dict(),
                                         backtests={"0.3": backtest_of(h, r, 0.3, UNIT, "auto")}))
    bt = backtest_at(results, 0.3)
    s = bt.summary
    assert s.n_runs == 14 and s.scores["headline"].mae < 0.01
    assert s.scores["headline"].mae <= min(s.scores[m].mae for m in ("last_value", "recent_mean", "saturating"))
    assert s.scores["headline"].coverage >= 0.85
    assert all(abs(sum(h.weights.values()) - 1) < 1e-9 for h in bt.headlines)
