"""TRL ``trainer_state.json``, as transformers writes it: ``TrainerState.save_to_json`` of a state whose
``log_history`` was filled the way ``Trainer.log`` fills it (``transformers/trainer.py``: the logs, then
``epoch``, then ``step`` = ``global_step``) with the metrics TRL's GRPOTrainer (1.x) logs — ``entropy``, ``kl``,
``reward``, ``reward_std``, ``frac_reward_zero_std``, ``clip_ratio/*``, ``completions/*``, evaluations as
``eval_*`` — and, when training reached ``max_steps``, the Trainer's closing summary (``train_runtime`` …)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from transformers import TrainerState

from ingest.errors import IngestError
from ingest.trl_state import latest_states, parse_trainer_state


def grpo_logs(step: int) -> dict[str, float]:
    """One training log of TRL's GRPOTrainer (the keys of its ``_metrics`` plus the Trainer's own)."""
    return {"loss": 0.0123, "grad_norm": 0.31, "learning_rate": 1e-6, "num_tokens": 8333.0 * step,
            "completions/mean_length": 180.5 - step, "completions/min_length": 13.0, "completions/max_length": 512.0,
            "completions/clipped_ratio": 0.05, "completions/mean_terminated_length": 170.0 - step,
            "completions/min_terminated_length": 13.0, "completions/max_terminated_length": 480.0,
            "rewards/accuracy_reward/mean": 0.2 + step / 100, "rewards/accuracy_reward/std": 0.3,
            "reward": 0.2 + step / 100, "reward_std": 0.3, "frac_reward_zero_std": 0.25,
            "entropy": 0.9 - step / 100, "kl": 0.001 * step, "clip_ratio/low_mean": 0.0, "clip_ratio/low_min": 0.0,
            "clip_ratio/high_mean": 0.001, "clip_ratio/high_max": 0.004, "clip_ratio/region_mean": 0.001}


def trainer_state(steps: int, *, max_steps: int = 100, eval_steps: int = 5, steps_per_epoch: int = 50,
                  trial_name: str | None = None) -> TrainerState:
    """The Trainer's state after ``steps`` optimizer steps: a log every step, an evaluation every
    ``eval_steps``, and the closing summary when ``steps == max_steps``."""
    state = TrainerState(max_steps=max_steps, logging_steps=1, eval_steps=eval_steps, save_steps=10,
                         train_batch_size=8, num_train_epochs=math.ceil(max_steps / steps_per_epoch),
                         trial_name=trial_name, log_history=[])

    def log(logs: dict[str, float]) -> None:  # transformers' Trainer.log
        logs["epoch"] = state.epoch
        state.log_history.append({**logs, "step": state.global_step})

    for s in range(1, steps + 1):
        state.global_step, state.epoch = s, s / steps_per_epoch
        log(grpo_logs(s))
        if s % eval_steps == 0:
            log({"eval_loss": 0.5, "eval_reward": 0.3 + s / 100, "eval_entropy": 0.8 - s / 100, "eval_runtime": 12.3,
                 "eval_samples_per_second": 8.1, "eval_steps_per_second": 1.0})
    if steps and steps == max_steps:
        log({"train_runtime": 3600.5, "train_samples_per_second": 2.2, "train_steps_per_second": 0.028,
             "total_flos": 0.0, "train_loss": 0.011})
    return state


def save(path: Path, state: TrainerState) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    state.save_to_json(str(path))
    return path


def test_log_history_to_series(tmp_path):
    path = save(tmp_path / "Qwen-GRPO" / "checkpoint-10" / "trainer_state.json", trainer_state(10))
    run = parse_trainer_state(path)
    assert run.run.name == "Qwen-GRPO"  # the output folder, not checkpoint-10
    assert run.run.external_id == str((tmp_path / "Qwen-GRPO" / "trainer_state.json").resolve())
    s = {x.key: x for x in run.series}
    assert s["entropy"].steps.tolist() == list(range(1, 11))
    assert s["entropy"].values[0] == pytest.approx(0.89)
    assert s["eval_reward"].steps.tolist() == [5, 10]
    assert s["epoch"].values[-1] == pytest.approx(0.2)
    assert "step" not in s
    assert run.run.params["global_step"] == 10 and run.run.params["log_format"] == "trainer_state"


def test_grpo_keys_planned_length_and_finished(tmp_path):
    running = parse_trainer_state(save(tmp_path / "a" / "checkpoint-40" / "trainer_state.json", trainer_state(40)))
    s = {x.key: x for x in running.series}
    for key in ("entropy", "kl", "reward", "reward_std", "frac_reward_zero_std", "clip_ratio/high_max",
                "clip_ratio/region_mean", "completions/clipped_ratio", "completions/mean_length", "eval_entropy"):
        assert key in s, key
    assert s["kl"].values[-1] == pytest.approx(0.04) and s["eval_entropy"].steps.tolist() == list(
        range(5, 41, 5))
    assert (running.run.state, running.run.params["max_steps"]) == ("unknown", 100)
    done = parse_trainer_state(save(tmp_path / "b" / "trainer_state.json", trainer_state(100)))
    assert done.run.state == "finished" and done.run.params["global_step"] == 100
    assert {x.key: x for x in done.series}["train_runtime"].steps.tolist() == [100]
    epochs = parse_trainer_state(save(tmp_path / "c" / "trainer_state.json", trainer_state(10, max_steps=-1)))
    assert epochs.run.state == "unknown"  # max_steps -1: training by epochs, no planned length


def test_trial_name_wins(tmp_path):
    run = parse_trainer_state(save(tmp_path / "out" / "trainer_state.json", trainer_state(2, trial_name="t7")))
    assert run.run.name == "t7"


def test_string_value_names_entry_and_key(tmp_path):
    state = trainer_state(3)
    state.log_history[1]["reward"] = "n/a"
    with pytest.raises(IngestError, match=r"log_history\[1\]: key 'reward' has value 'n/a'"):
        parse_trainer_state(save(tmp_path / "o" / "trainer_state.json", state))


def test_missing_step_and_bad_json(tmp_path):
    state = trainer_state(2)
    del state.log_history[0]["step"]
    with pytest.raises(IngestError, match=r"log_history\[0\]: missing step; steps are integers"):
        parse_trainer_state(save(tmp_path / "a" / "trainer_state.json", state))
    (p := tmp_path / "b" / "trainer_state.json").parent.mkdir()
    p.write_text('{"log_history": [')
    with pytest.raises(IngestError, match="not valid JSON"):
        parse_trainer_state(p)
    p.write_text('{"global_step": 3}')
    with pytest.raises(IngestError, match="no 'log_history' list"):
        parse_trainer_state(p)


def test_empty_history_is_an_empty_run_with_a_note(tmp_path):
    run = parse_trainer_state(save(tmp_path / "e" / "trainer_state.json", trainer_state(0)))
    assert run.series == () and "empty" in run.notes[0]


def test_latest_copy_per_output_folder(tmp_path):
    a = save(tmp_path / "run" / "checkpoint-5" / "trainer_state.json", trainer_state(5))
    b = save(tmp_path / "run" / "checkpoint-10" / "trainer_state.json", trainer_state(10))
    final = save(tmp_path / "run" / "trainer_state.json", trainer_state(10))
    other = save(tmp_path / "other" / "checkpoint-3" / "trainer_state.json", trainer_state(3))
    assert sorted(latest_states([a, b, other])) == sorted([b, other])
    assert sorted(latest_states([a, b, final, other])) == sorted([final, other])
