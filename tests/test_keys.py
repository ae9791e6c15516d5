"""Key resolution: framework metric names → roles, and the choice of a run's entropy/performance keys."""

from __future__ import annotations

import pytest

from analysis.keys import benchmark_name, choose_keys, training_data
from ingest.keys import resolve_role, resolve_roles


@pytest.mark.parametrize(
    ("key", "role"),
    [
        ("actor/entropy", "entropy"),
        ("actor/entropy_loss", "entropy"),  # older verl: holds the entropy value
        ("actor/entropy_coeff", "other"),
        ("val-core/openai/gsm8k/acc/mean@1", "performance"),
        ("val-core/openai/gsm8k/acc/mean_at_1", "performance"),  # as verl writes it to MLflow
        ("val-aux/openai/gsm8k/reward/mean@4", "performance"),
        ("val/test_score/openai/gsm8k", "performance"),
        ("critic/score/mean", "train_reward"),
        ("response_length/mean", "response_length"),
        ("actor/pg_clipfrac", "pg_clipfrac"),
        ("entropy", "entropy"),  # TRL
        ("train/entropy", "entropy"),  # TRL via W&B
        ("reward", "train_reward"),
        ("eval_accuracy", "performance"),
        ("eval_loss", "other"),  # lower is better: never a performance metric
        ("eval_runtime", "other"),
        ("policy_entropy", "entropy"),  # OpenRLHF
        ("eval/math500_pass1", "performance"),
        ("timing/gen", "other"),
        ("my_model/token_entropy", "entropy"),  # suffix match
        ("objective/entropy", "other"),  # TRL PPO: a negative per-sequence sum, not a mean token entropy
        ("policy/entropy_avg", "entropy"),  # … this one is
    ],
)
def test_roles(key, role):
    assert resolve_role(key) == role


def test_overrides_win():
    assert resolve_role("my/custom_h", {"my/custom_h": "entropy"}) == "entropy"
    assert resolve_roles(["a", "actor/entropy"], {"a": "performance"}) == {"a": "performance",
                                                                            "actor/entropy": "entropy"}


def _choose(keys, **kw):
    return choose_keys(keys, resolve_roles(keys), **kw)


def test_validation_accuracy_beats_reward_beats_training_reward_and_core_beats_aux():
    keys = ["actor/entropy", "actor/entropy_loss", "critic/score/mean", "val-aux/gsm8k/acc/mean@1",
            "val-core/gsm8k/reward/mean@1", "val-core/gsm8k/acc/mean@4", "val-core/gsm8k/acc/mean@1", "timing/gen"]
    c = _choose(keys)
    assert c.entropy == "actor/entropy"  # newer verl name beats the older one
    assert c.performance == "val-core/gsm8k/acc/mean@1" and c.performance_kind == "val_acc"
    assert c.benchmarks == ("val-core/gsm8k/acc/mean@1",) and c.unrecognised == ("timing/gen",)
    assert _choose(["actor/entropy", "val-core/x/reward/mean@1", "critic/score/mean"]).performance_kind == "val_reward"
    train = _choose(["actor/entropy", "critic/score/mean", "critic/rewards/mean"])
    assert train.performance == "critic/score/mean" and train.performance_kind == "train_reward"
    assert "no validation metric" in train.reason


def test_every_benchmark_is_listed_and_the_headline_follows_the_stated_rule():
    keys = ["actor/entropy", "val-core/openai/gsm8k/acc/mean@1", "val-core/DigitalLearningGmbH/MATH-lighteval/acc/mean@1",
            "val-aux/openai/gsm8k/reward/mean@1"]
    by_name = _choose(keys)
    assert by_name.benchmarks == ("val-core/DigitalLearningGmbH/MATH-lighteval/acc/mean@1",
                                  "val-core/openai/gsm8k/acc/mean@1") and by_name.rule == "name"
    assert [benchmark_name(k) for k in by_name.benchmarks] == ["DigitalLearningGmbH/MATH-lighteval", "openai/gsm8k"]
    trained = _choose(keys, params={"data/train_files": "~/data/gsm8k/train.parquet"})
    assert trained.performance == "val-core/openai/gsm8k/acc/mean@1" and trained.rule == "training data"
    assert "the benchmark of the run's training data" in trained.reason
    both = _choose(keys, params={"data.train_files": "['~/data/gsm8k/train.parquet', '~/data/math/train.parquet']"})
    assert both.rule == "name"  # trained on both: the rule cannot decide by the training data
    user = _choose(keys, performance_key="val-core/openai/gsm8k/acc/mean@1")
    assert user.rule == "user" and user.benchmarks[0] == "val-core/openai/gsm8k/acc/mean@1" and len(user.benchmarks) == 2
    assert training_data({"trainer/total_epochs": 3}) is None


def test_user_choice_per_run_and_missing_metrics():
    keys = ["entropy", "eval_accuracy", "eval_reward"]
    c = _choose(keys, performance_key="eval_reward")
    assert c.performance == "eval_reward" and c.performance_kind == "override"
    c = _choose(keys, performance_key="not-there")
    assert c.performance == "eval_accuracy" and "override 'not-there' not in this run" in c.reason
    none = _choose(["train/loss"])
    assert none.entropy is None and none.performance is None and none.reason == "no performance metric"
