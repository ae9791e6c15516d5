"""Entropy decay models: recovery of known curves, model choice, step_at, robustness, errors, real logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.decay import fit_decay
from models.errors import FitError
from tests.real_logs import read_verl

T = np.arange(300, dtype=float)


def noisy(h: np.ndarray, seed: int = 0, sd: float = 0.01) -> np.ndarray:
    return h + np.random.default_rng(seed).normal(0, sd, h.size)


def test_exponential_is_recovered_and_projects_the_crossing() -> None:
    h = noisy(0.1 + 0.8 * np.exp(-T / 60))
    fit = fit_decay(T, h)
    assert fit.kind == "exponential"
    assert fit.params["f"] == pytest.approx(0.1, abs=0.01)
    assert fit.params["h0"] == pytest.approx(0.9, abs=0.02)
    assert fit.params["tau"] == pytest.approx(60, rel=0.06)
    assert fit.floor == fit.params["f"]
    assert fit.rmse == pytest.approx(0.01, rel=0.2)
    assert (fit.n, fit.step_min, fit.step_max) == (300, 0, 299)
    # true crossing of 0.3: 60·ln(0.8/0.2) = 83.2
    assert fit.step_at(0.3) == pytest.approx(83.2, abs=3)
    assert fit.step_at(0.05) is None  # below the asymptote: never
    assert fit.step_at(2.0) == 0.0  # already below at the start
    assert [k for k, _ in fit.candidates] == ["exponential", "power", "linear"]
    assert fit.criterion == "holdout_rmse"


def test_power_law_is_recovered() -> None:
    h = noisy(1.5 * (T + 20) ** -0.6, seed=1, sd=0.005)
    fit = fit_decay(T, h)
    assert fit.kind == "power"
    assert fit.params["alpha"] == pytest.approx(0.6, abs=0.1)
    truth = 1.5 * (np.array([400.0, 600.0]) + 20) ** -0.6
    np.testing.assert_allclose(fit.predict([400, 600]), truth, atol=0.01)


def test_linear_is_chosen_for_a_straight_decline_and_never_crosses_when_rising() -> None:
    fit = fit_decay(T, noisy(1.0 - 0.002 * T, seed=2))
    assert fit.kind == "linear"
    assert fit.params["k"] == pytest.approx(0.002, rel=0.03)
    assert fit.floor == 0.0
    assert fit.step_at(0.5) == pytest.approx(250, abs=6)
    rising = fit_decay(T, noisy(0.2 + 0.001 * T, seed=3), kinds=("linear",))
    assert rising.step_at(0.1) is None
    assert rising.candidates == (("linear", pytest.approx(rising.candidates[0][1])),)


def test_steps_not_starting_at_zero_are_handled() -> None:
    steps = T + 1000
    fit = fit_decay(steps, noisy(0.1 + 0.8 * np.exp(-T / 60), seed=4))
    assert fit.step_min == 1000
    assert float(fit.predict(1000)) == pytest.approx(0.9, abs=0.02)
    assert fit.step_at(0.3) == pytest.approx(1083.2, abs=3)


def test_spikes_do_not_bend_the_curve() -> None:
    clean = noisy(0.1 + 0.8 * np.exp(-T / 60), seed=5)
    spiky = clean.copy()
    spiky[[20, 50, 90, 150, 220]] += 0.5
    a, b = fit_decay(T, clean), fit_decay(T, spiky)
    assert b.kind == "exponential"
    assert b.params["tau"] == pytest.approx(a.params["tau"], rel=0.05)
    assert b.params["f"] == pytest.approx(a.params["f"], abs=0.01)


def test_few_points_use_aic() -> None:
    t = np.arange(0, 100, 10, dtype=float)
    fit = fit_decay(t, 0.1 + 0.8 * np.exp(-t / 30))
    assert fit.criterion == "aic"
    assert fit.kind == "exponential"
    assert fit.params["tau"] == pytest.approx(30, rel=0.02)


@pytest.mark.parametrize(
    ("steps", "entropy", "kinds", "cause"),
    [
        ([0, 1, 2], [0.5, 0.4, 0.3], ("exponential",), "too_few_points"),
        ([0, 1, 2, 3], [0.5, np.nan, 0.3, 0.2], ("exponential",), "non_finite"),
        ([0, 1, 2, 3], [0.5, 0.4, 0.3], ("exponential",), "shape"),
        ([0, 1, 2, 3], [0.5, 0.4, 0.3, 0.2], ("spline",), "bad_option"),
        ([5, 5, 5, 5], [0.5, 0.4, 0.3, 0.2], ("linear",), "no_step_spread"),
    ],
)
def test_errors_name_their_cause(steps, entropy, kinds, cause) -> None:
    with pytest.raises(FitError) as err:
        fit_decay(steps, entropy, kinds=kinds)
    assert err.value.cause == cause


def test_real_verl_entropy_curves(verl_logs: list[Path]) -> None:
    assert len(verl_logs) == 3
    for path in verl_logs:
        steps, h, _, _ = read_verl(path)
        fit = fit_decay(steps, h)
        assert fit.kind in ("exponential", "power"), path.name  # a curve that levels off, not a line
        assert fit.rmse < 0.04, path.name
        assert fit.floor >= 0
        # the model follows the data where it ends
        assert float(fit.predict(steps[-1])) == pytest.approx(np.median(h[-20:]), abs=0.02), path.name
        assert dict(fit.candidates)["linear"] > dict(fit.candidates)[fit.kind]


def test_floor_never_exceeds_the_end_level() -> None:
    """A slowly decaying power tail fitted by an exponential on its first part: the free fit puts the floor
    above where the curve already ends; the floor is capped at the end level (median of the last points)."""
    from models.decay import end_level

    t = np.arange(1, 73, dtype=float)
    h = noisy(0.02 + 1.2 * (t + 3) ** -0.8, seed=3, sd=0.004)
    fit = fit_decay(t, h, kinds=("exponential",))
    assert fit.floor <= end_level(h) + 1e-12
    assert fit.predict(t[-1]) <= end_level(h) + 3 * 0.004
    for kind in ("exponential", "power"):
        assert fit_decay(t, h, kinds=(kind,)).floor <= end_level(h) + 1e-12
