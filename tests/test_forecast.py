"""Forecast from the first 30% of a run: law vs baselines on synthetic law-following runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.align import align
from models.errors import FitError
from models.forecast import METHODS, forecast, warmup_pairs

T = 250


def synthetic_run(seed: int, *, steps: int = T, every: int = 5, a: float = 0.3, b: float = 1.05, h0: float = 1.0,
                  floor: float = 0.1, tau: float | None = None, h_noise: float = 0.01, r_noise: float = 0.01,
                  warmup_evals: int = 0):
    """Entropy every step (exponential decay, 1% multiplicative noise); evaluations every ``every`` steps
    from step 0, R = b − a·e^H(policy) + noise. ``warmup_evals`` leading evaluations score ≈ 0 while entropy
    stays flat (a format-learning phase that is not on the law). Returns (hs, h, ps, r, r_true)."""
    rng = np.random.default_rng(seed)
    tau = tau or steps / 3
    shift = warmup_evals * every

    def h_of(s):
        s = np.asarray(s, dtype=float)
        return floor + (h0 - floor) * np.exp(-np.maximum(s - shift, 0) / tau)

    hs = np.arange(1, steps + 1)
    h = h_of(hs - 1) * (1 + h_noise * rng.standard_normal(steps))
    ps = np.arange(0, steps + 1, every)
    r_true = b - a * np.exp(h_of(ps))
    r_true[:warmup_evals] = 0.01
    r = r_true + r_noise * rng.standard_normal(len(ps))
    return hs, h, ps, r, r_true


def _final(ps, r_true, cut):
    post = ps[ps > cut]
    return post, float(r_true[-3:].mean())


def test_law_predicts_final_within_a_point_and_beats_last_value():
    law_err, last_err = [], []
    for seed in range(10):
        hs, h, ps, r, rt = synthetic_run(seed)
        cut = 0.3 * T
        post, truth = _final(ps, rt, cut)
        fc = forecast(hs, h, ps, r, cutoff_step=cut, horizon_steps=post)
        assert set(fc.methods) == set(METHODS)
        law_err.append(abs(fc.methods["law"].window(post[-3:])[0] - truth))
        last_err.append(abs(fc.methods["last_value"].window(post[-3:])[0] - truth))
        assert fc.n_pairs == 16 and fc.warmup_end_step is None
        assert sum(fc.weights.values()) == pytest.approx(1.0)
        assert abs(fc.ceiling - 0.75) < 0.05  # b − a, extrapolated to H = 0 from 30% of the run
        lo, hi = fc.ceiling_interval
        assert lo <= fc.ceiling <= hi
    assert np.mean(law_err) < 0.012 and max(law_err) < 0.03  # about a point on average (0.97 pt measured)
    assert min(last_err) > 0.08  # still rising at the cutoff: the last value misses most of the gain
    assert np.mean(law_err) < np.mean(last_err) / 8


def test_interval_covers_truth_in_most_seeds():
    covered = 0
    for seed in range(20):
        hs, h, ps, r, rt = synthetic_run(100 + seed)
        post = ps[ps > 0.3 * T]
        fc = forecast(hs, h, ps, r, cutoff_step=0.3 * T, horizon_steps=post, n_boot=300, seed=seed)
        _, (lo, hi) = fc.methods["law"].window(post[-3:])
        covered += lo <= r[-3:].mean() <= hi
    assert covered >= 16


def test_predictions_respect_bounds():
    # b − a = 1.1 > 1: an accuracy cannot get there; entropy decays toward 0
    hs, h, ps, r, _ = synthetic_run(3, a=0.4, b=1.5, floor=0.0, tau=50)
    r = np.minimum(r, 1.0)
    post = ps[ps > 75]
    fc = forecast(hs, h, ps, r, cutoff_step=75, horizon_steps=post)
    for m in fc.methods.values():
        assert np.all(m.mean <= 1.0) and np.all(m.hi <= 1.0) and np.all(m.lo >= 0.0)
        assert np.all(m.paths <= 1.0)
    assert fc.ceiling == 1.0 and fc.ceiling_interval[1] <= 1.0
    assert fc.law.ceiling > 1.0  # the unbounded fit says more; the bounded forecast clips it
    free = forecast(hs, h, ps, r, cutoff_step=75, horizon_steps=post, bounds=None)
    assert free.ceiling > 1.0


def test_steps_to_within_a_point_of_the_ceiling():
    a, b, tau = 0.3, 1.0, 60.0
    hs, h, ps, r, _ = synthetic_run(5, a=a, b=b, floor=0.0, tau=tau, steps=600, every=10)
    fc = forecast(hs, h, ps, r, cutoff_step=180, horizon_steps=ps[ps > 180], decay_kinds=("exponential",))
    # truth: a·(e^H − 1) ≤ 0.01 ⇔ H ≤ ln(1 + 0.01/a); H(s) = e^(−s/τ)
    true_step = -tau * np.log(np.log(1 + 0.01 / a))
    got = fc.steps_to_within(0.01)
    assert got is not None and abs(got - true_step) / true_step < 0.25
    # with an entropy floor the run never gets within 1 pt of b − a (it plateaus below it)
    hs, h, ps, r, _ = synthetic_run(5, floor=0.3)
    fc = forecast(hs, h, ps, r, cutoff_step=75, horizon_steps=ps[ps > 75], decay_kinds=("exponential",))
    assert fc.steps_to_within(0.01) is None


def test_warmup_phase_is_dropped():
    hs, h, ps, r, rt = synthetic_run(2, warmup_evals=3)
    post, truth = _final(ps, rt, 75)
    fc = forecast(hs, h, ps, r, cutoff_step=75, horizon_steps=post)
    assert fc.warmup_end_step is not None and 15 <= fc.warmup_end_step <= 21
    raw = forecast(hs, h, ps, r, cutoff_step=75, horizon_steps=post, warmup=False)
    with_trim = abs(fc.methods["law"].window(post[-3:])[0] - truth)
    without = abs(raw.methods["law"].window(post[-3:])[0] - truth)
    assert with_trim < 0.02 and without > 2 * with_trim
    # no false warm-up on law-following runs
    for seed in range(10):
        hs, h, ps, r, _ = synthetic_run(seed)
        al = align(pd.Series(h, index=hs), pd.Series(r, index=ps))
        assert warmup_pairs(al.entropy[:16], al.performance[:16]) == 0


def test_robust_loss_resists_an_outlier_evaluation():
    hs, h, ps, r, rt = synthetic_run(4)
    r = r.copy()
    r[8] = 0.05  # a broken evaluation before the cutoff
    post, truth = _final(ps, rt, 75)
    errs = {}
    for loss in ("linear", "soft_l1", "huber"):
        fc = forecast(hs, h, ps, r, cutoff_step=75, horizon_steps=post, loss=loss, warmup=False)
        assert fc.loss == loss and fc.law.loss == loss
        errs[loss] = abs(fc.methods["law"].window(post[-3:])[0] - truth)
    assert errs["soft_l1"] < 0.015 and errs["huber"] < 0.015
    assert errs["soft_l1"] < errs["linear"]


def test_too_little_data_before_the_cutoff_is_a_typed_error():
    hs, h, ps, r, _ = synthetic_run(0)
    with pytest.raises(FitError) as e:
        forecast(hs, h, ps, r, cutoff_step=10, horizon_steps=ps[ps > 10])
    assert e.value.cause == "too_few_points_before_cutoff"
    with pytest.raises(FitError) as e:
        forecast(hs, h, ps, r, cutoff_step=75, horizon_steps=ps[ps > 75], loss="cauchy")
    assert e.value.cause == "bad_option"


def test_forecast_on_the_grpo_simulator_reports_every_method():
    from entropy_dash import simulator as sim
    run = sim.simulate(sim.SimConfig(steps=120, seed=1))
    (hs, h), (ps, r) = run.entropy, run.validation
    fc = forecast(hs, h, ps, r, cutoff_step=36, horizon_steps=ps[ps > 36])
    for m in fc.methods.values():
        assert np.all(np.isfinite(m.mean)) and np.all((m.lo <= m.mean + 1e-9) & (m.mean <= m.hi + 1e-9))
    assert fc.to_dict()["methods"]["law"]["final"] == fc.final("law")


def test_anchored_level_and_its_ceiling():
    """The law's level b′ = mean(R + a·e^H) over the last half of the pre-cutoff pairs; anchor=False keeps b."""
    hs, h, ps, r, _ = synthetic_run(7)
    post = ps[ps > 75]
    fc = forecast(hs, h, ps, r, cutoff_step=75, horizon_steps=post)
    free = forecast(hs, h, ps, r, cutoff_step=75, horizon_steps=post, anchor=False)
    assert fc.anchor_pairs == 8 and free.anchor_pairs == 0 and free.level_shift == 0.0
    al = align(pd.Series(h[hs <= 75], index=hs[hs <= 75]), pd.Series(r[ps <= 75], index=ps[ps <= 75]))
    hh, rr = al.entropy, al.performance
    assert len(hh) == fc.n_pairs == 16
    b_anchor = float(np.mean(rr[-8:] + fc.law.a * np.exp(hh[-8:])))
    assert fc.level_shift == pytest.approx(b_anchor - fc.law.b)
    assert fc.methods["law"].params["b_anchored"] == pytest.approx(b_anchor)
    assert fc.ceiling == pytest.approx(min(b_anchor - fc.law.a, 1.0))
    assert fc.ceiling_interval[0] <= fc.ceiling <= fc.ceiling_interval[1]
    assert free.ceiling == pytest.approx(min(free.law.ceiling, 1.0))
    # on a run that follows the law exactly the level barely moves
    assert abs(fc.level_shift) < 0.01
    assert fc.to_dict()["level_shift"] == fc.level_shift
