"""``ingest file PATH``: format detection and dispatch, on a folder of mixed trainer outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.errors import IngestError
from ingest.files import FileSource, detect, discover
from tests.test_trl_state import save, trainer_state

VERL = ("\x1b[36m(main_task pid=5)\x1b[0m step:0 - actor/entropy_loss:0.500 - critic/score/mean:0.100\n"
        "\x1b[36m(main_task pid=5)\x1b[0m step:1 - actor/entropy_loss:0.450 - critic/score/mean:0.200\n")


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    (tmp_path / "verl").mkdir()
    (tmp_path / "verl" / "ppo_run.log").write_text(VERL)
    (tmp_path / "verl" / "notes.txt").write_text("nothing to see\n")
    (tmp_path / "trl" / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "trl" / "checkpoint-4").mkdir()
    save(tmp_path / "trl" / "checkpoint-2" / "trainer_state.json", trainer_state(2))  # transformers' own writer
    save(tmp_path / "trl" / "checkpoint-4" / "trainer_state.json", trainer_state(4))
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "wide.csv").write_text("step,entropy\n0,0.9\n1,0.8\n")
    (tmp_path / "tables" / "long.jsonl").write_text(
        "".join(json.dumps({"run": r, "key": "e", "step": 0, "value": 1.0}) + "\n" for r in ("a", "b")))
    (tmp_path / "README.md").write_text("# step:0 - not: a log\n")
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "events.out.tfevents.1.host").write_bytes(b"\x00" * 16)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.csv").write_text("step,e\n0,1\n")
    return tmp_path


def test_folder_dispatch(outputs):
    found, problems = discover(outputs)
    assert problems == []
    found = {d.path.relative_to(outputs).as_posix(): d.fmt for d in found}
    assert found == {"verl/ppo_run.log": "verl_log", "trl/checkpoint-4/trainer_state.json": "trainer_state",
                     "tables/wide.csv": "tabular", "tables/long.jsonl": "tabular"}
    src = FileSource(str(outputs))
    src.check()
    assert src.count_runs() is None  # multi-run tables: not known before reading
    runs = {r.run.name: r for r in src.iter_runs({})}
    assert sorted(runs) == ["a", "b", "ppo_run", "trl", "wide"]
    assert runs["trl"].run.external_id == str((outputs / "trl" / "trainer_state.json").resolve())
    assert len(runs["trl"].series[0]) == 4  # the latest checkpoint's history
    assert runs["a"].run.external_id == f"{(outputs / 'tables' / 'long.jsonl').resolve()}#a"
    ent = next(s for s in runs["ppo_run"].series if s.key == "actor/entropy_loss")
    assert ent.steps.tolist() == [1, 2]


def test_single_files(outputs):
    assert FileSource(str(outputs / "verl" / "ppo_run.log")).count_runs() == 1
    # a verl log under any name, and a renamed trainer state, when named explicitly
    (odd := outputs / "console_output.dat").write_text(VERL)
    assert detect(odd, explicit=True) == "verl_log" and detect(odd, explicit=False) is None
    renamed = save(outputs / "state.json", trainer_state(3))
    (run,) = FileSource(str(renamed)).iter_runs({})
    assert run.run.name == outputs.name and len(run.series[0]) == 3


def test_unknown_format_names_the_file_and_the_formats(outputs):
    with pytest.raises(IngestError, match=r"README\.md: unknown file format; supported: verl console log.*"
                                          r"trainer_state\.json.*\.csv and \.jsonl"):
        list(FileSource(str(outputs / "README.md")).iter_runs({}))
    with pytest.raises(IngestError, match="unknown file format"):
        FileSource(str(outputs / "tb" / "events.out.tfevents.1.host")).check()


def test_missing_and_empty(tmp_path):
    with pytest.raises(IngestError, match="no such file or folder"):
        FileSource(str(tmp_path / "nope")).check()
    with pytest.raises(IngestError, match="no recognised files inside"):
        FileSource(str(tmp_path)).check()


def test_real_verl_folder(verl_logs):
    src = FileSource(str(verl_logs[0].parent))
    assert src.count_runs() == 3
    runs = {r.run.name: r for r in src.iter_runs({})}
    assert {p.stem for p in verl_logs} == set(runs)
    for run in runs.values():
        n = len(next(s for s in run.series if s.key == "actor/entropy_loss"))
        assert n in (435, 106)


def _sync(path: Path, known: dict) -> list:
    src = FileSource(str(path))
    src.known_files = dict(known)
    runs = list(src.iter_runs({}))
    for r in runs:
        for fs in r.file_states:
            known[fs.path] = fs
    for fs in src.leftover_states:
        known[fs.path] = fs
    return runs


def test_a_file_rewritten_from_the_start_is_a_new_launch(tmp_path):
    import os

    path = tmp_path / "r.csv"
    path.write_text("step,acc\n1,0.1\n2,0.2\n3,0.3\n4,0.4\n")
    known: dict = {}
    (first,) = _sync(path, known)
    assert first.run.name == "r" and not first.notes
    path.write_text("step,acc\n1,0.5\n2,0.6\n")  # restarted with '>': first steps again, other values
    (second,) = _sync(path, known)
    assert second.run.name == "r (launch 2)" and second.run.external_id == first.run.external_id + "#launch-2"
    assert any("rewritten from the start (shorter than before" in n and "the earlier launch stays as run 'r'" in n
               for n in second.notes), second.notes
    with path.open("a") as fh:
        fh.write("3,0.7\n")
    os.utime(path, (1, 1))  # settled
    (third,) = _sync(path, known)  # appended to: still launch 2, no new note
    assert third.run.name == "r (launch 2)" and third.series[0].steps.tolist() == [3] and not third.notes


def test_a_file_rewritten_with_the_same_first_points_is_the_same_launch(tmp_path):
    path = tmp_path / "out" / "trainer_state.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"log_history": [{"step": 1, "loss": 0.5}]}))
    known: dict = {}
    (first,) = _sync(path, known)
    path.write_text(json.dumps({"log_history": [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4}]}))
    (second,) = _sync(path, known)  # the Trainer rewrites the whole file at every save
    assert second.run.external_id == first.run.external_id and second.run.name == "out"
