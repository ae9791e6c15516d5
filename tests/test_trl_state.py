"""TRL ``trainer_state.json`` (the shape transformers' Trainer.save_state writes, with GRPOTrainer metrics)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.errors import IngestError
from ingest.trl_state import latest_states, parse_trainer_state


def _state(steps: int, **extra) -> dict:
    history = []
    for s in range(1, steps + 1):
        history.append({"clip_ratio/region_mean": 0.0, "completions/mean_length": 180.5 - s,
                        "entropy": 0.9 - s / 100, "epoch": s / 50, "grad_norm": 0.31, "kl": 0.001 * s,
                        "learning_rate": 1e-6, "loss": 0.0123, "reward": 0.2 + s / 100, "reward_std": 0.3,
                        "step": s})
        if s % 5 == 0:
            history.append({"epoch": s / 50, "eval_loss": 0.5, "eval_reward": 0.3 + s / 100,
                            "eval_runtime": 12.3, "eval_samples_per_second": 8.1, "step": s})
    return {"best_global_step": None, "best_metric": None, "best_model_checkpoint": None, "epoch": steps / 50,
            "eval_steps": 5, "global_step": steps, "is_hyper_param_search": False, "is_local_process_zero": True,
            "is_world_process_zero": True, "log_history": history, "logging_steps": 1, "max_steps": 100,
            "num_input_tokens_seen": 0, "num_train_epochs": 2, "save_steps": 10, "stateful_callbacks": {},
            "total_flos": 0.0, "train_batch_size": 8, "trial_name": None, "trial_params": None, **extra}


def _write(path: Path, state: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2))
    return path


def test_log_history_to_series(tmp_path):
    path = _write(tmp_path / "Qwen-GRPO" / "checkpoint-10" / "trainer_state.json", _state(10))
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


def test_trial_name_wins(tmp_path):
    run = parse_trainer_state(_write(tmp_path / "out" / "trainer_state.json", _state(2, trial_name="t7")))
    assert run.run.name == "t7"


def test_string_value_names_entry_and_key(tmp_path):
    state = _state(3)
    state["log_history"][1]["reward"] = "n/a"
    with pytest.raises(IngestError, match=r"log_history\[1\]: key 'reward' has value 'n/a'"):
        parse_trainer_state(_write(tmp_path / "o" / "trainer_state.json", state))


def test_missing_step_and_bad_json(tmp_path):
    state = _state(2)
    del state["log_history"][0]["step"]
    with pytest.raises(IngestError, match=r"log_history\[0\]: missing step; steps are integers"):
        parse_trainer_state(_write(tmp_path / "a" / "trainer_state.json", state))
    (p := tmp_path / "b" / "trainer_state.json").parent.mkdir()
    p.write_text('{"log_history": [')
    with pytest.raises(IngestError, match="not valid JSON"):
        parse_trainer_state(p)
    p.write_text('{"global_step": 3}')
    with pytest.raises(IngestError, match="no 'log_history' list"):
        parse_trainer_state(p)


def test_empty_history_is_an_empty_run_with_a_note(tmp_path):
    run = parse_trainer_state(_write(tmp_path / "e" / "trainer_state.json", _state(0)))
    assert run.series == () and "empty" in run.notes[0]


def test_latest_copy_per_output_folder(tmp_path):
    a = _write(tmp_path / "run" / "checkpoint-5" / "trainer_state.json", _state(5))
    b = _write(tmp_path / "run" / "checkpoint-10" / "trainer_state.json", _state(10))
    final = _write(tmp_path / "run" / "trainer_state.json", _state(10))
    other = _write(tmp_path / "other" / "checkpoint-3" / "trainer_state.json", _state(3))
    assert sorted(latest_states([a, b, other])) == sorted([b, other])
    assert sorted(latest_states([a, b, final, other])) == sorted([final, other])
