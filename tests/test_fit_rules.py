"""The rules that make a fit trustworthy: warm-up exclusion, the metric's range, degenerate series.

Checked on the real verl logs (a format-learning jump at step 0, plateaus) and on synthetic series whose
answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.align import align
from models.degenerate import R2_MIN, check_law, check_series
from models.law import fit_law
from models.metric_range import MetricRange, metric_kind, metric_range
from models.warmup import KEEP, detect_warmup, pinned_warmup
from tests.real_logs import read_verl

UNIT = MetricRange(0.0, 1.0, "accuracy", "")
OPEN = MetricRange(None, None, "reward", "")


# ------------------------------------------------------------------------------------------ warm-up
def _law_run(n: int = 30, a: float = 0.3, b: float = 1.1, seed: int = 0, noise: float = 0.004):
    rng = np.random.default_rng(seed)
    steps = np.arange(0, 5 * n, 5)
    h = 0.05 + 0.9 * np.exp(-steps / 40)
    r = b - a * np.exp(h) + rng.normal(0, noise, n)
    return h, r, steps


def test_a_format_learning_jump_at_step_0_is_excluded_and_said_why():
    h, r, steps = _law_run()
    r = r.copy()
    r[0] = 0.02  # before the output format is learned (the law says 0.33 there)
    w = detect_warmup(h, r, steps)
    assert w.steps == (0,) and w.n == 1 and w.mode == "auto"
    assert "step 0" in w.reason and "0.020" in w.reason and "standard errors" in w.reason
    r[0] = 0.21  # 0.12 below the law, less than a quarter of the run's spread: the law's own noise, kept
    assert detect_warmup(h, r, steps).n == 0


def test_runs_that_follow_the_law_from_the_start_lose_nothing():
    for seed in range(20):
        h, r, steps = _law_run(seed=seed)
        assert detect_warmup(h, r, steps).n == 0, seed
    h, r, steps = _law_run(noise=0.0)
    r = r + 1e-4 * np.exp(-steps / 20)  # a systematic misfit far below the run's spread, however many σ
    assert detect_warmup(h, r, steps).n == 0


def test_suffix_sums_give_the_same_answer_as_refitting_every_tail():
    """The O(n) scan equals the definition: refit the law on pairs[k:] and judge pair k − 1."""
    rng = np.random.default_rng(3)
    for trial in range(30):
        h, r, steps = _law_run(n=int(rng.integers(8, 40)), seed=100 + trial, noise=0.01)
        r = r.copy()
        r[: int(rng.integers(0, 4))] -= rng.uniform(0, 0.3)
        assert detect_warmup(h, r, steps).n == _brute_force(h, r), trial


def _brute_force(h, r, z=4.0):
    n = len(h)
    k = min(n // 3, n - 6)
    while k > 0:
        law = fit_law(h[k:], r[k:])
        if not law.holds or law.sigma <= 0:
            return 0
        x = np.exp(h[k - 1])
        se = law.sigma * np.sqrt(1 + 1 / law.n + (x - law.x_mean) ** 2 / law.sxx)
        drop = law.predict(h[k - 1]) - r[k - 1]
        if drop / se > z and drop >= 0.25 * np.ptp(r):
            return k
        k -= 1
    return 0


def test_pinned_and_kept_warmup():
    steps = np.array([0, 5, 10, 15, 20])
    assert pinned_warmup(steps, 10).steps == (0, 5, 10)
    assert "pinned" in pinned_warmup(steps, 10).reason
    assert KEEP.n == 0 and KEEP.mode == "keep"


def test_real_verl_logs_warmup(verl_logs):
    found = {}
    for path in verl_logs:
        hs, hv, rs, rv = read_verl(path)
        p = align(pd.Series(hv, index=hs.astype(int)), pd.Series(rv, index=rs.astype(int)))
        found[path.name] = detect_warmup(p.entropy, p.performance, p.steps).steps
    qwen = [k for k in found if k.startswith("Qwen")]
    gemma = [k for k in found if k.startswith("gemma")]
    assert all(found[k] == (0, 10, 20) for k in qwen)  # the format is learned in the first 20 steps
    assert found[gemma[0]] == ()  # gemma starts from SFT: nothing to exclude


# ------------------------------------------------------------------------------------------ range
@pytest.mark.parametrize("key,kind", [
    ("val-core/openai/gsm8k/acc/mean@1", "accuracy"), ("val-core/openai/gsm8k/acc/mean_at_1", "accuracy"),
    ("val/test_score/openai/gsm8k", "accuracy"), ("eval_accuracy", "accuracy"), ("val-core/x/reward/mean@1", "reward"),
    ("critic/score/mean", "reward"), ("eval_reward", "reward"), ("my_metric", "unbounded"),
])
def test_kind_by_key(key, kind):
    assert metric_kind(key) == kind


def test_range_by_kind_and_data():
    assert metric_range("val-core/g/acc/mean@1", [0.2, 0.9]).bounds == (0.0, 1.0)
    game = metric_range("val-core/game2048/acc/mean@1", [-1.0, -1.0, 1.0])
    assert not game.bounded and "leave [0, 1]" in game.reason
    assert not metric_range("critic/score/mean", [0.2]).bounded
    cfg = metric_range("critic/score/mean", [0.2], configured=(-1, 1))
    assert cfg.bounds == (-1.0, 1.0) and cfg.kind == "configured"
    assert UNIT.clip(1.07) == 1.0 and UNIT.clip(-0.2) == 0.0 and OPEN.clip(7.0) == 7.0


# ------------------------------------------------------------------------------------------ degenerate
def test_constant_performance_is_nothing_to_fit_and_never_r2_one():
    steps = np.arange(0, 50, 5)
    bad = check_series(steps, np.full(10, -1.0), OPEN)
    assert bad.status == "constant" and bad.reason == "performance constant at -1.000 over 10 evaluations: nothing to fit"
    h = np.linspace(0.6, 0.1, 10)
    fit = fit_law(h, np.full(10, -1.0))
    assert np.isnan(fit.r2)  # no variance: R² is undefined, never 1


def test_no_learning_saturated_too_few():
    rng = np.random.default_rng(0)
    steps = np.arange(0, 600, 10)
    flat = np.clip(0.001 + rng.normal(0, 0.0005, len(steps)), 0, 1)
    assert check_series(steps, flat, UNIT).status == "no_learning"
    saturated = np.clip(0.995 + rng.normal(0, 0.002, len(steps)), 0, 1)
    bad = check_series(steps, saturated, UNIT)
    assert bad.status == "saturated" and "no room to learn" in bad.reason
    assert check_series(steps[:2], np.array([0.2, 0.3]), UNIT).status == "too_few_evaluations"
    rising = 0.9 - 0.6 * np.exp(-steps / 100) + rng.normal(0, 0.01, len(steps))
    assert check_series(steps, rising, UNIT) is None


def test_law_that_does_not_hold():
    h = np.linspace(0.8, 0.1, 20)
    wrong_way = check_law(fit_law(h, 0.3 + 0.2 * np.exp(h)))  # performance falls as entropy falls
    assert wrong_way.status == "law_does_not_hold" and "a = " in wrong_way.reason
    rng = np.random.default_rng(3)
    noise = check_law(fit_law(h, 0.5 - 0.01 * np.exp(h) + rng.normal(0, 0.02, 20)))  # a > 0, R² tiny
    assert noise is not None and f"below {R2_MIN}" in noise.reason


def test_models_never_overflow_on_finite_input():
    from models.errors import FitError

    with pytest.raises(FitError, match="e\\^H would overflow") as err:
        fit_law(np.array([0.5, 1e200, 0.2]), np.array([0.1, 0.2, 0.3]))
    assert err.value.cause == "out_of_range"
    w = detect_warmup(np.array([1e200] * 10), np.linspace(0, 1, 10), np.arange(10))
    assert w.n == 0


def test_alignment_of_unsorted_series_equals_sorted():
    h = pd.Series([0.5, 0.4, 0.3], index=[3, 1, 2])
    r = pd.Series([0.2, 0.1], index=[2, 0])
    a = align(h, r)
    assert list(a.steps) == [0, 2] and list(a.entropy) == [0.4, 0.5]


# ------------------------------------------------------------------------------------------ state
def test_planned_length_and_state_from_what_sources_log():
    from analysis.run import progress
    from db.records import planned_length, run_state

    assert planned_length({"trainer/total_training_steps": "600"}) == (600, "param trainer/total_training_steps")
    assert planned_length({"trainer.total_training_steps": None,  # W&B config, flattened with "."
                           "actor_rollout_ref.actor.optim.total_training_steps": 435})[0] == 435
    assert planned_length({"max_steps": -1, "num_train_epochs": 3}) == (None, None)  # TRL training by epochs
    assert planned_length({"max_steps": 1200})[0] == 1200
    assert planned_length({"trainer/total_epochs": 15}) == (None, None)  # epochs alone do not give steps
    assert [run_state(s) for s in ("RUNNING", "FINISHED", "KILLED", "crashed", None)] == \
        ["running", "finished", "failed", "failed", "unknown"]
    assert progress("running", 373, 600) == (False, "in progress: step 373 of 600")
    assert progress("unknown", 373, 600) == (False, "in progress: step 373 of 600 (state unknown)")
    assert progress("finished", 373, 600) == (False, "stopped early: step 373 of 600")
    assert progress("finished", 600, 600) == (True, "finished at step 600 of 600")
    # only a source that says so, or the user, makes a run finished: never assumed
    assert progress("unknown", 435, None) == (False, "state unknown at step 435: not used as a finished run (the "
                                              "source does not say it finished; mark it with `--finished` or "
                                              "finished = true in sources.toml)")
    assert progress("unknown", 600, 600)[0] is False
    assert progress("unknown", 435, None, marked_finished=True) == (
        True, "finished at step 435 (marked finished by the user)")
    assert progress("failed", 200, 600) == (False, "failed at step 200 of 600")
