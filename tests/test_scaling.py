"""Model size from names/params/tags, and the log-linear fit of a law coefficient against size."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import FitError
from models.scaling import fit_scaling, fit_scaling_table, model_size_from, parse_model_size


@pytest.mark.parametrize(("text", "size"), [
    ("Qwen2.5-0.5B-Instruct", 0.5), ("gemma-2-2b-it", 2.0), ("llama-7b", 7.0), ("1.5B", 1.5), ("70B", 70.0),
    ("8x7B", 56.0), ("Qwen3-30B-A3B", 30.0), ("gpt2-124M", 0.124), ("meta-llama/Llama-3.1-8B-Instruct", 8.0),
    ("Qwen2.5-0.5B-bsz256_2-prompt1024-resp512-0.567", 0.5),
    ("gsm8k", None), ("bsz256", None), ("sft_model_path/global_step_58", None), ("", None), (None, None),
])
def test_parse_model_size(text, size):
    got = parse_model_size(text)
    assert got == (pytest.approx(size) if size is not None else None)


def test_model_size_from_run_fields():
    assert model_size_from(model="sft_model_path/global_step_58", name="gemma-2-2b-it-ppo-bsz512_4") == 2.0
    assert model_size_from(params={"actor_rollout_ref.model.path": "Qwen/Qwen2.5-7B"}, name="run-1") == 7.0
    assert model_size_from(tags={"model_size": "1.5B"}) == 1.5
    assert model_size_from(name="baseline") is None


def test_fit_scaling_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    sizes = np.repeat([0.5, 1.5, 3.0, 7.0, 14.0, 32.0], 4)
    a = -0.05 * np.log(sizes) + 0.4 + 0.003 * rng.standard_normal(len(sizes))
    fit = fit_scaling(sizes, a)
    assert fit.k == pytest.approx(-0.05, abs=0.003) and fit.c == pytest.approx(0.4, abs=0.003)
    assert fit.k_ci[0] < -0.05 < fit.k_ci[1]
    assert fit.r2 > 0.99 and fit.n == 24 and fit.k_se < 0.002
    assert float(fit.predict(7.0)) == pytest.approx(-0.05 * np.log(7) + 0.4, abs=0.003)
    exact = fit_scaling([1, 2, 4], [1.0, 1.0 + np.log(2), 1.0 + np.log(4)])
    assert exact.k == pytest.approx(1.0) and exact.c == pytest.approx(1.0) and exact.r2 == pytest.approx(1.0)


def test_fit_scaling_errors_and_table():
    with pytest.raises(FitError) as e:
        fit_scaling([1.5, 1.5, 1.5], [0.1, 0.2, 0.3])
    assert e.value.cause == "no_size_spread"
    with pytest.raises(FitError) as e:
        fit_scaling([1, 2], [0.1, 0.2])
    assert e.value.cause == "too_few_points"
    rows = [{"family": "qwen", "size": s, "a": 0.4 - 0.05 * np.log(s), "b": 1.0} for s in (0.5, 1.5, 7.0)]
    rows += [{"family": "gemma", "size": 2.0, "a": 0.3, "b": 0.9}]
    table = fit_scaling_table(rows, ("a",), group="family")
    assert table[("qwen", "a")].k == pytest.approx(-0.05)
    assert "at least 3 runs" in table[("gemma", "a")]
