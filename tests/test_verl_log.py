"""verl console logs: the real ones in ../shared/data/verl-console, and small snippets for edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.errors import IngestError
from ingest.verl_log import iter_lines, lenient_config, looks_like_verl_log, parse_verl_log, read_verl_log

VAL = "val/test_score/openai/gsm8k"
ENT = "actor/entropy_loss"
ESC = "\x1b[2m\x1b[36m"
RESET = "\x1b[0m"


def _by_name(logs: list[Path], start: str) -> Path:
    return next(p for p in logs if p.name.startswith(start))


def _series(run, key):
    return next(s for s in run.series if s.key == key)


def _point(run, key, step):
    s = _series(run, key)
    return float(s.values[np.searchsorted(s.steps, step)]) if step in s.steps else None


@pytest.mark.parametrize("prefix", ["Qwen2.5-0.5B-bsz256_2-prompt1024", "Qwen2.5-0.5B-bsz256_2-prompt512"])
def test_qwen_logs_have_435_entropy_and_43_in_loop_validations(verl_logs, prefix):
    run = parse_verl_log(_by_name(verl_logs, prefix))
    ent, val = _series(run, ENT), _series(run, VAL)
    assert len(ent) == 435
    assert ent.steps.tolist() == list(range(1, 436))  # old 0-based steps shifted to current verl's 1-based
    in_loop = [s for s in val.steps.tolist() if s not in (0, 435)]
    assert in_loop == list(range(10, 431, 10)) and len(in_loop) == 43
    assert val.steps[0] == 0 and val.steps[-1] == 435  # initial and final validation
    assert run.run.params["step_offset"] == 1
    assert run.run.status == "finished"
    assert run.notes == ()


def test_qwen_values_of_specific_lines(verl_logs):
    run = parse_verl_log(_by_name(verl_logs, "Qwen2.5-0.5B-bsz256_2-prompt1024"))
    # line 251: "step:0 - … actor/entropy_loss:0.526 … critic/score/mean:0.012 …" → step 1
    assert _point(run, ENT, 1) == pytest.approx(0.526)
    assert _point(run, "critic/score/mean", 1) == pytest.approx(0.012)
    assert _point(run, "critic/kl", 1) == 0.0  # "-0.000"
    assert _point(run, "critic/lr(1e-4)", 1) == pytest.approx(0.1)
    assert _point(run, ENT, 2) == pytest.approx(0.481)
    # step:9 line holds val/test_score/openai/gsm8k:0.013 → the policy after 10 updates
    assert _point(run, VAL, 10) == pytest.approx(0.013)
    assert _point(run, VAL, 20) == pytest.approx(0.176)
    # full-precision initial and final validation lines
    assert _point(run, VAL, 0) == pytest.approx(0.0007621951219512195, abs=1e-15)
    assert _point(run, VAL, 435) == pytest.approx(0.5685975609756098, abs=1e-15)
    assert np.isnan(_series(run, ENT).wall_times).all()


def test_qwen_config_params(verl_logs):
    for path in [p for p in verl_logs if p.name.startswith("Qwen")]:
        run = parse_verl_log(path)
        p = run.run.params
        assert p["actor_rollout_ref.model.path"] == "Qwen/Qwen2.5-0.5B-Instruct"
        assert p["actor_rollout_ref.actor.entropy_coeff"] == 0.001
        assert p["algorithm.kl_ctrl.kl_coef"] == 0.001
        assert p["trainer.test_freq"] == 10
        assert p["trainer.logger"] == ["console"]
        assert p["actor_rollout_ref.model.override_config"] == {}
        assert run.run.model == "Qwen2.5-0.5B-Instruct"
        assert run.run.algorithm == "ppo"  # adv_estimator gae
        assert run.run.project == "verl_example"
        assert run.run.name == path.stem
        assert run.run.external_id == str(path.resolve())


def test_prompt512_config_survives_a_line_glued_to_another_process(verl_logs):
    # "'experiment_name': 'gemma2b_function_rm',(pid=934604) …" — another worker's output on the same line
    run = parse_verl_log(_by_name(verl_logs, "Qwen2.5-0.5B-bsz256_2-prompt512"))
    assert run.run.params["trainer.experiment_name"] == "gemma2b_function_rm"
    assert run.run.params["trainer.total_epochs"] == 15


def test_gemma_log_is_cut_before_the_final_validation(verl_logs):
    run = parse_verl_log(_by_name(verl_logs, "gemma-2-2b-it"))
    assert len(_series(run, ENT)) == 106
    val = _series(run, VAL)
    assert val.steps.tolist() == [0, *range(10, 101, 10)]
    assert val.values[0] == pytest.approx(0.520579268292683)  # full precision beats the rounded step:0 echo
    assert "test_score/openai/gsm8k" not in {s.key for s in run.series}
    assert run.run.status is None
    assert "no 'Final validation metrics' line yet" in " ".join(run.notices)  # said, not stored: it may come
    notes = " ".join(run.notes)
    assert "repeats the initial validation" in notes
    # lines of the config dump were replaced by "commit:" lines: what is left is recovered line by line
    assert "params recovered line by line" in notes
    assert run.run.params["actor_rollout_ref.model.path"] == "sft_model_path/global_step_58"
    assert run.run.params["trainer.project_name"] == "verl_example"
    assert run.run.model == "sft_model_path/global_step_58"


def test_head_detection_on_real_logs(verl_logs):
    for path in verl_logs:
        assert looks_like_verl_log(path.read_text(errors="replace"))
    assert not looks_like_verl_log("Let's start with the first step:\nstep:3 then add")


# ----------------------------------------------------------------------------------------------- snippets


def _write(tmp_path: Path, text: str, name: str = "run.log") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def _line(text: str, tag: str = "main_task pid=1") -> str:
    return f"{ESC}({tag}){RESET} {text}\n"


def test_prefix_and_ansi_are_stripped(tmp_path):
    path = _write(tmp_path, _line("step:0 - actor/entropy_loss:0.500 - critic/score/mean:0.100")
                  + "plain text in between\n"
                  + "(main_task pid=1) step:1 - actor/entropy_loss:0.400 - critic/score/mean:0.200 -\n")
    run = parse_verl_log(path)
    assert _series(run, ENT).steps.tolist() == [1, 2]
    assert _series(run, ENT).values.tolist() == [0.5, 0.4]
    assert [ln.tag for ln in iter_lines(path)] == ["main_task pid=1", "", "main_task pid=1"]


def test_garbage_field_in_a_step_line_names_the_line(tmp_path):
    path = _write(tmp_path, _line("step:0 - actor/entropy_loss:0.5") + _line("hello")
                  + _line("step:1 - actor/entropy_loss:0.4 - this is not a field"))
    with pytest.raises(IngestError, match=r"run\.log, line 3: field 'this is not a field'"):
        parse_verl_log(path)


def test_non_numeric_value_names_key_and_line(tmp_path):
    path = _write(tmp_path, _line("step:0 - actor/entropy_loss:0.5") + _line("step:1 - actor/entropy_loss:abc"))
    with pytest.raises(IngestError, match=r"line 2: key 'actor/entropy_loss' has value 'abc'"):
        parse_verl_log(path)


def test_nan_and_inf_values_are_kept(tmp_path):
    path = _write(tmp_path, _line("step:0 - actor/entropy_loss:nan - critic/score/mean:inf"))
    run = parse_verl_log(path)
    assert np.isnan(_series(run, ENT).values[0]) and np.isinf(_series(run, "critic/score/mean").values[0])


def test_current_verl_convention_is_not_shifted(tmp_path):
    # current verl: validation before training logged at step 0, training from step 1
    text = (_line('"Initial validation metrics: {\'val-core/gsm8k/reward/mean@1\': 0.25}"', "TaskRunner pid=7")
            + _line("step:0 - val-core/gsm8k/reward/mean@1:0.250", "TaskRunner pid=7")
            + _line("step:1 - actor/entropy:0.900", "TaskRunner pid=7")
            + _line("step:2 - actor/entropy:0.800 - val-core/gsm8k/reward/mean@1:0.400", "TaskRunner pid=7")
            + _line('"Final validation metrics: {\'val-core/gsm8k/reward/mean@1\': 0.4012}"', "TaskRunner pid=7"))
    run = parse_verl_log(_write(tmp_path, text))
    assert run.run.params["step_offset"] == 0
    assert _series(run, "actor/entropy").steps.tolist() == [1, 2]
    val = _series(run, "val-core/gsm8k/reward/mean@1")
    assert val.steps.tolist() == [0, 2]
    assert val.values.tolist() == [0.25, 0.4012]  # the final, full-precision value wins at the last step


def test_explicit_step_offset_overrides_detection(tmp_path):
    path = _write(tmp_path, _line("step:50 - actor/entropy_loss:0.3"))
    assert _series(parse_verl_log(path), ENT).steps.tolist() == [50]
    assert _series(parse_verl_log(path, step_offset=1), ENT).steps.tolist() == [51]


def test_torn_last_line_is_dropped_with_a_note(tmp_path):
    text = (_line("step:0 - actor/entropy_loss:0.5 - critic/score/mean:0.1 - response_length/mean:300.000")
            + f"{ESC}(main_task pid=1){RESET} step:1 - actor/entropy_loss:0.4 - critic/sc")
    run = parse_verl_log(_write(tmp_path, text.replace("critic/sc", "critic/score/mean:0.")))
    assert _series(run, ENT).steps.tolist() == [1]
    assert any("cut off" in n and "left for the next sync" in n for n in run.notices)


def test_complete_unterminated_last_line_is_kept(tmp_path):
    text = _line("step:0 - actor/entropy_loss:0.5 - critic/score/mean:0.1") + _line(
        "step:1 - actor/entropy_loss:0.4 - critic/score/mean:0.2").rstrip("\n")
    run = parse_verl_log(_write(tmp_path, text))
    assert _series(run, ENT).steps.tolist() == [1, 2]


def test_negative_step_is_an_error(tmp_path):
    with pytest.raises(IngestError, match="line 1: negative step -1"):
        parse_verl_log(_write(tmp_path, _line("step:-1 - actor/entropy_loss:0.5")))


def test_sample_dump_lines_mentioning_step_are_ignored(tmp_path):
    text = (_line("step:0 - actor/entropy_loss:0.5") + _line("Let's start with the first step:")
            + _line("step:1 Calculate the total") + _line("step:1 - actor/entropy_loss:0.4"))
    assert _series(parse_verl_log(_write(tmp_path, text)), ENT).steps.tolist() == [1, 2]


def test_config_dump_interleaved_with_other_workers(tmp_path):
    text = (_line("{'actor_rollout_ref': {'model': {'path': '/models/Qwen2.5-7B'},")
            + _line("hello from a worker", "WorkerDict pid=9")
            + _line("                       'rollout': {'n': 5}},")
            + _line(" 'algorithm': {'adv_estimator': 'grpo'}}")
            + _line("step:0 - actor/entropy:0.5"))
    run = parse_verl_log(_write(tmp_path, text))
    assert run.run.params["actor_rollout_ref.rollout.n"] == 5
    assert run.run.model == "Qwen2.5-7B"
    assert run.run.algorithm == "grpo"


def test_lenient_config_matches_strict_on_a_clean_dump():
    lines = ["{'a': {'b': 1,", "       'c': {'d': 'x}', 'e': [1, 2]}},", " 'f': None,", " 'g': {}}"]
    assert lenient_config(lines) == {"a.b": 1, "a.c.d": "x}", "a.c.e": [1, 2], "f": None, "g": {}}
    # with a line lost, the rest is still placed by its column
    assert lenient_config([lines[0], lines[2], lines[3]]) == {"a.b": 1, "f": None, "g": {}}


def test_no_step_lines_is_an_error(tmp_path):
    with pytest.raises(IngestError, match="no verl 'step:N - key:value' lines"):
        parse_verl_log(_write(tmp_path, "just text\n"))


def _tagged(lines: list[str], pid: int) -> str:
    return "".join(f"\x1b[36m(main_task pid={pid})\x1b[0m {ln}\n" for ln in lines)


def test_two_runs_in_one_log_are_refused_naming_the_lines(tmp_path):
    e = "actor/entropy"
    path = tmp_path / "two.log"
    path.write_text(_tagged([f"step:1 - {e}:0.9", f"step:2 - {e}:0.8"], 7) + _tagged([f"step:1 - {e}:0.5"], 9))
    with pytest.raises(IngestError, match=r"two\.log, line 3: a second run starts \('main_task pid=9' logs step:1 "
                                          r"again after 'main_task pid=7' started at step:1, line 2 its last\)"):
        parse_verl_log(path)
    path.write_text(_tagged([f"step:1 - {e}:0.9"], 7) + _tagged([f"step:2 - {e}:0.8"], 9)
                    + _tagged([f"step:3 - {e}:0.7"], 7))
    with pytest.raises(IngestError, match=r"line 3: step lines of two processes are interleaved"):
        parse_verl_log(path)
    path.write_text(_tagged(["{'trainer': {'project_name': 'p',", "             'experiment_name': 'a'}}",
                             f"step:1 - {e}:0.9"], 7)
                    + _tagged(["{'trainer': {'project_name': 'p',", "             'experiment_name': 'b'}}",
                               f"step:4 - {e}:0.5"], 7))
    with pytest.raises(IngestError, match=r"line 5: a second run \(experiment_name 'b'\) starts in a log of "
                                          r"experiment_name 'a' \(line 2\)"):
        parse_verl_log(path)


def test_a_resumed_trainer_is_the_same_run_and_tailing_keeps_checking(tmp_path):
    e = "actor/entropy"
    path = tmp_path / "res.log"
    path.write_text(_tagged([f"step:1 - {e}:0.9", f"step:2 - {e}:0.8"], 7))
    first = read_verl_log(path)
    with path.open("a") as fh:
        fh.write(_tagged([f"step:2 - {e}:0.6", f"step:3 - {e}:0.5"], 9))
    again = read_verl_log(path, resume=(first.offset, first.state))
    assert any("the trainer was launched again (main_task pid=9 after main_task pid=7), going on from step:2" in n
               for n in again.run.notes)
    with path.open("a") as fh:
        fh.write(_tagged([f"step:4 - {e}:0.4"], 7))
    with pytest.raises(IngestError, match=r"line 5: step lines of two processes are interleaved"):
        read_verl_log(path, resume=(again.offset, again.state))
