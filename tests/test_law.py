"""The law fit R = -a*exp(H) + b: closed form vs scipy, the ceiling interval, typed errors, flags."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit

from models.errors import FitError
from models.law import FLAG_EXTRAPOLATED, FLAG_LAW_FAILS, fit_law, fit_law_many, fit_law_robust


def _law_points(a=0.3, b=1.2, n=40, noise=0.01, seed=0, h_hi=1.5, h_lo=0.1):
    rng = np.random.default_rng(seed)
    h = np.linspace(h_hi, h_lo, n)
    return h, -a * np.exp(h) + b + rng.normal(0, noise, n)


def test_recovers_known_law_and_matches_curve_fit():
    h, r = _law_points()
    fit = fit_law(h, r)
    (a, b), cov = curve_fit(lambda x, a, b: -a * np.exp(x) + b, h, r)
    assert fit.a == pytest.approx(a, rel=1e-9)
    assert fit.b == pytest.approx(b, rel=1e-9)
    assert fit.a_se == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-6)
    assert fit.b_se == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-6)
    assert fit.cov_ab == pytest.approx(cov[0, 1], rel=1e-6)
    assert fit.ceiling == pytest.approx(fit.b - fit.a)
    assert fit.ceiling_lo < 0.9 < fit.ceiling_hi
    assert fit.r2 > 0.99 and fit.n == 40 and fit.dof == 38
    assert fit.h_min == pytest.approx(0.1) and fit.h_max == pytest.approx(1.5)
    assert fit.flags == ()
    assert "ceiling R(H=0)" in fit.report()


def test_ceiling_interval_covers_truth_about_95_percent():
    hits = 0
    for seed in range(400):
        h, r = _law_points(n=12, noise=0.03, seed=seed)
        fit = fit_law(h, r)
        hits += fit.ceiling_lo <= 0.9 <= fit.ceiling_hi
    assert 0.92 <= hits / 400 <= 0.98


def test_ceiling_is_prediction_at_h0_with_its_band():
    h, r = _law_points(seed=3)
    fit = fit_law(h, r)
    lo, hi = fit.interval(0.0)
    assert float(fit.predict(0.0)) == pytest.approx(fit.ceiling)
    assert (float(lo), float(hi)) == pytest.approx(fit.ceiling_ci)
    plo, phi = fit.interval(0.0, prediction=True)
    assert float(phi - plo) > float(hi - lo)


@pytest.mark.parametrize(
    ("h", "r", "cause"),
    [
        ([0.5, 0.4], [0.1, 0.2], "too_few_points"),
        ([0.5, np.nan, 0.3], [0.1, 0.2, 0.3], "non_finite"),
        ([0.5, 0.4, 0.3], [0.1, np.inf, 0.3], "non_finite"),
        ([0.4, 0.4, 0.4, 0.4], [0.1, 0.2, 0.3, 0.4], "no_entropy_spread"),
    ],
)
def test_typed_errors_name_the_cause(h, r, cause):
    with pytest.raises(FitError) as err:
        fit_law(h, r)
    assert err.value.cause == cause


def test_flags_law_that_does_not_hold_and_far_extrapolation():
    h = np.linspace(1.0, 0.2, 20)
    bad = fit_law(h, 0.3 * np.exp(h))  # performance falls as entropy falls
    assert bad.a < 0 and not bad.holds and FLAG_LAW_FAILS in bad.flags
    h2 = np.linspace(0.55, 0.45, 20)  # 0.45 below the data to H = 0 vs a 0.1 wide range
    far = fit_law(h2, -0.3 * np.exp(h2) + 1.2 + np.random.default_rng(0).normal(0, 0.001, 20))
    assert far.extrapolation == pytest.approx(4.5) and FLAG_EXTRAPOLATED in far.flags


def test_batch_equals_one_by_one_and_marks_failures():
    rows = [_law_points(seed=s, n=30) for s in range(5)]
    h = np.full((6, 30), np.nan)
    r = np.full((6, 30), np.nan)
    for i, (hh, rr) in enumerate(rows):
        h[i], r[i] = hh, rr
    h[5, :2], r[5, :2] = [0.3, 0.2], [0.5, 0.6]  # only two points
    batch = fit_law_many(h, r)
    for i, (hh, rr) in enumerate(rows):
        one = fit_law(hh, rr)
        assert batch.fit(i).ceiling == pytest.approx(one.ceiling, rel=1e-12)
        assert batch.fit(i).ceiling_lo == pytest.approx(one.ceiling_lo, rel=1e-12)
    assert batch.error[5] == "too_few_points" and np.isnan(batch.ceiling[5])
    with pytest.raises(FitError):
        batch.fit(5)


def test_robust_fit_resists_an_outlier_evaluation():
    h, r = _law_points(noise=0.005, seed=7)
    r[-2] -= 0.4  # one broken evaluation near the end of the run, where it pulls the ceiling most
    ols = fit_law(h, r)
    rob = fit_law_robust(h, r, loss="soft_l1")
    assert abs(rob.ceiling - 0.9) < abs(ols.ceiling - 0.9)
    assert abs(rob.ceiling - 0.9) < 0.01
    clean = fit_law(np.delete(h, -2), np.delete(r, -2))  # the fit without the broken point
    assert rob.ceiling == pytest.approx(clean.ceiling) and rob.ceiling_ci == pytest.approx(clean.ceiling_ci)
    assert rob.loss == "soft_l1" and rob.n_excluded == 1 and rob.n == 39
