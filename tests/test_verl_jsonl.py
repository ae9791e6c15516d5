"""verl's file logger as a source (``ingest.verl_jsonl``), on files written by verl's own logger code.

``FileLogger`` and ``OldFileLogger`` below are verl's ``verl/utils/tracking.py`` class ``FileLogger``
(Apache-2.0), copied line for line: ``FileLogger`` as of commit b178a3cd (2026-01-29; mode ``wb`` and orjson
since df369302b, 2026-01-08), ``OldFileLogger`` as of commit 7bc70bbf0 (2025-09-06; mode ``w`` and
``json.dumps``, buffered). Only the class names differ. ``fit`` logs the way ``RayPPOTrainer.fit``
(``verl/trainer/ppo/ray_trainer.py``) calls ``logger.log``: the validation before training at the start
step (0, or the step a resumed run loaded from its checkpoint) as a line of its own, then one line per
training step from start + 1, with the validation merged in every ``test_freq`` steps and at the last one.
The real-data test replays the shared TensorBoard runs through the logger, one logger per launch (event file),
as verl with ``trainer.logger=['tensorboard','file']`` writes the same dicts to both backends.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util

import ingest.files as files_module
from db import Store
from entropy_dash.cli import main
from ingest.errors import IngestError
from ingest.files import FileSource, detect
from ingest.sync import sync_source
from ingest.tensorboard import TensorBoardSource
from ingest.verl_jsonl import parse_verl_jsonl
from tests.test_faults import point_set

ENT, VAL = "actor/entropy", "val-core/openai/gsm8k/acc/mean@1"


class FileLogger:  # verl/utils/tracking.py @ b178a3cd, verbatim
    def __init__(self, project_name: str, experiment_name: str):
        self.project_name = project_name
        self.experiment_name = experiment_name

        self.filepath = os.getenv("VERL_FILE_LOGGER_PATH", None)
        if self.filepath is None:
            root_path = os.path.expanduser(os.getenv("VERL_FILE_LOGGER_ROOT", "."))
            directory = os.path.join(root_path, self.project_name)
            os.makedirs(directory, exist_ok=True)
            self.filepath = os.path.join(directory, f"{self.experiment_name}.jsonl")
            print(f"Creating file logger at {self.filepath}")
        self.fp = open(self.filepath, "wb", buffering=0)  # noqa: SIM115

    def log(self, data, step):
        data = {"step": step, "data": data}
        self.fp.write(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")

    def finish(self):
        self.fp.close()


class OldFileLogger:  # verl/utils/tracking.py @ 7bc70bbf0, verbatim
    def __init__(self, project_name: str, experiment_name: str):
        self.project_name = project_name
        self.experiment_name = experiment_name

        self.filepath = os.getenv("VERL_FILE_LOGGER_PATH", None)
        if self.filepath is None:
            root_path = os.path.expanduser(os.getenv("VERL_FILE_LOGGER_ROOT", "."))
            directory = os.path.join(root_path, self.project_name)
            os.makedirs(directory, exist_ok=True)
            self.filepath = os.path.join(directory, f"{self.experiment_name}.jsonl")
            print(f"Creating file logger at {self.filepath}")
        self.fp = open(self.filepath, "w")  # noqa: SIM115

    def log(self, data, step):
        data = {"step": step, "data": data}
        self.fp.write(json.dumps(data) + "\n")

    def finish(self):
        self.fp.close()


def _train(step: int, launch: int) -> dict:
    """The training metrics of one step (numpy scalars, as verl's metric reducers return them)."""
    return {ENT: np.float32(0.6 * math.exp(-step / 30) + 0.01 * launch), "critic/score/mean": np.float64(step / 60),
            "actor/grad_norm": np.float64(0.2 + 0.001 * step), "training/global_step": step,
            "training/epoch": np.int64(step // 25), "response_length/clip_ratio": np.float64(0.0)}


def _val(step: int, launch: int) -> dict:
    return {VAL: float(np.float32(0.85 - 0.6 * math.exp(-step / 8) + 0.001 * launch))}


def fit(logger, start: int, end: int, *, launch: int, test_freq: int = 5, on_line=None) -> None:
    """Log as ``RayPPOTrainer.fit`` does from ``start`` (0, or a checkpoint's step) to ``end``. The old logger
    gets Python numbers: json.dumps cannot write numpy scalars (the error df369302b fixed)."""

    def log(data: dict, step: int) -> None:
        if isinstance(logger, OldFileLogger):
            data = {k: v.item() if isinstance(v, np.generic) else v for k, v in data.items()}
        logger.log(data=data, step=step)

    log(_val(start, launch), start)  # val_before_train
    if on_line:
        on_line()
    for step in range(start + 1, end + 1):
        metrics = _train(step, launch)
        if step == end or step % test_freq == 0:
            metrics.update(_val(step, launch))
        log(metrics, step)
        if on_line:
            on_line()


@pytest.fixture
def logger_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("VERL_FILE_LOGGER_PATH", raising=False)
    monkeypatch.setenv("VERL_FILE_LOGGER_ROOT", str(tmp_path / "logs"))
    return tmp_path / "logs"


def sync(db: str, path: Path):
    return sync_source(Store.open(db), FileSource(str(path)))


def stored(db: str, key: str) -> dict[int, float]:
    store = Store.open(db, create=False)
    s = store.series(store.runs_frame()["id"].tolist(), [key])
    return dict(zip(s["step"].tolist(), s["value"].tolist(), strict=True))


def test_a_file_written_by_verls_logger_is_one_run_named_by_its_path(logger_root, tmp_path):
    logger = FileLogger("gsm8k_grpo", "qwen2-7b-kl0")
    fit(logger, 0, 12, launch=0)
    logger.finish()
    path = logger_root / "gsm8k_grpo" / "qwen2-7b-kl0.jsonl"
    assert detect(path, explicit=False) == "verl_jsonl"
    first = path.read_bytes().split(b"\n")[0]
    assert first.startswith(b'{"step":0,"data":{"val-core/') and b"actor/" not in first  # a line of its own
    run = parse_verl_jsonl(path)
    assert (run.run.name, run.run.project, run.run.external_id) == ("qwen2-7b-kl0", "gsm8k_grpo", str(path.resolve()))
    assert run.run.params["log_format"] == "verl_file_logger" and run.run.state == "unknown"
    series = {s.key: s for s in run.series}
    assert series[ENT].steps.tolist() == list(range(1, 13))
    assert series[ENT].values[0] == pytest.approx(float(np.float32(0.6 * math.exp(-1 / 30))))
    assert series[VAL].steps.tolist() == [0, 5, 10, 12]
    assert series["training/epoch"].values.tolist() == [0.0] * 12
    assert run.notes == ()

    db = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["ingest", "file", str(path), "--db", db, "--quiet"]) == 0
    runs = Store.open(db).runs_frame()
    assert runs[["name", "project"]].values.tolist() == [["qwen2-7b-kl0", "gsm8k_grpo"]]
    assert len(point_set(db)) == sum(len(s) for s in run.series) == 12 * 6 + 4


@pytest.mark.parametrize("writer", [FileLogger, OldFileLogger])
def test_resumed_run_rewrites_the_file_stored_points_are_kept(logger_root, tmp_path, writer):
    """Launch 1 runs steps 0–90 and dies; launch 2 resumes from its step-60 checkpoint: verl reopens the file
    (``wb``/``w``: truncated) and logs the validation at step 60, then steps 61–120. Synced while both write
    (the old logger's lines reach the file in 8 KiB chunks): the steps only the first launch logged stay, the
    second launch's values win where both logged."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    path = logger_root / "p" / "exp.jsonl"
    results = []
    lines = [0]

    def every_seventh_line() -> None:
        lines[0] += 1
        if lines[0] % 7 == 0 and (results or path.stat().st_size):  # (a new, empty file is an error of its own)
            results.append(sync(db, path))

    first = writer("p", "exp")
    fit(first, 0, 90, launch=1, on_line=every_seventh_line)
    first.finish()
    results.append(sync(db, path))
    before = stored(db, ENT)
    assert sorted(before) == list(range(1, 91))

    second = writer("p", "exp")  # the resumed launch: the file is truncated here
    if writer is FileLogger:
        assert path.stat().st_size == 0
        emptied = sync(db, path)  # no failure: a rewritten file that is empty for now
        results.append(emptied)
        assert any("empty for now" in n and "points stored before are kept" in n for n in emptied.notes)
        assert stored(db, ENT) == before
    fit(second, 60, 120, launch=2, on_line=every_seventh_line)
    second.finish()
    results.append(sync(db, path))
    assert any("read afresh" in n for r in results for n in r.notes)
    ent, val = stored(db, ENT), stored(db, VAL)
    assert sorted(ent) == list(range(1, 121))
    assert ent[60] == pytest.approx(float(_train(60, 1)[ENT]))  # launch 2 logged no training at step 60
    assert ent[75] == pytest.approx(float(_train(75, 2)[ENT]))
    assert ent[59] == pytest.approx(float(_train(59, 1)[ENT]))
    assert val[60] == pytest.approx(_val(60, 2)[VAL]) and val[90] == pytest.approx(_val(90, 2)[VAL])
    assert val[0] == pytest.approx(_val(0, 1)[VAL]) and sorted(val) == list(range(0, 121, 5))
    notes = Store.open(db).runs_frame().iloc[0]["notes"]
    rewrite = [n for n in notes if "the file was rewritten" in n]
    assert len(rewrite) == 1, notes
    assert "the new content starts at step 60; the earlier content held steps 0–90" in rewrite[0]
    assert "reopens the file with mode 'wb'" in rewrite[0] and "the points stored before are kept" in rewrite[0]

    # idempotent: the same file again changes nothing; a fresh store holds only what the file now has
    again = sync(db, path)
    assert (again.runs_seen, again.points, again.unchanged_files) == (0, 0, 1)
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    sync(fresh, path)
    assert sorted(stored(fresh, ENT)) == list(range(61, 121))
    fresh_notes = Store.open(fresh).runs_frame().iloc[0]["notes"]
    assert fresh_notes == ["exp.jsonl: the file starts at step 60, not 0 or 1: the run was resumed from a checkpoint "
                           "and verl's file logger rewrote the file then, so earlier steps are not in it"]
    # the tail reads gave exactly what one read of the final file gives, for the steps it has
    final = point_set(db)
    assert final[final["step"] > 60].reset_index(drop=True).equals(
        point_set(fresh).query("step > 60").reset_index(drop=True))


def test_appended_at_any_byte_equals_a_clean_ingest(logger_root, tmp_path, monkeypatch):
    logger = FileLogger("p", "cut")
    fit(logger, 0, 60, launch=0)
    logger.finish()
    path = logger_root / "p" / "cut.jsonl"
    full = path.read_bytes()
    db = f"sqlite:///{tmp_path / 's.db'}"
    points = 0
    for cut in sorted(random.Random(5).sample(range(1, len(full)), 15)) + [len(full)]:
        path.write_bytes(full[:cut])  # (an append: same inode, same first bytes)
        points += sync(db, path).points
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    sync(fresh, path)
    pd.testing.assert_frame_equal(point_set(db), point_set(fresh))
    assert points == len(point_set(db))  # a tail read never wrote a point twice
    state = next(iter(Store.open(db).file_states(1).values()))
    assert state.offset == len(full) and state.parser_state["format"] == "verl_jsonl"
    assert state.parser_state["parser"]["last_step"] == 60

    def no_parsing(*args, **kwargs):
        raise AssertionError("an unchanged file was opened")

    for name in ("read_verl_jsonl", "is_verl_file_log"):
        monkeypatch.setattr(files_module, name, no_parsing)
    assert sync(db, path).unchanged_files == 1


def _launches(folder: Path) -> list[list[tuple[int, dict]]]:
    """Per event file (launch of the trainer), in launch order, the dict ``Tracking.log`` got at each step."""
    out = []
    for f in sorted(folder.glob("events.out.tfevents.*"), key=lambda p: int(p.name.split(".")[3])):
        steps: dict[int, dict] = {}
        for event in EventFileLoader(str(f)).Load():
            for v in event.summary.value:
                x = v.simple_value if v.HasField("simple_value") else float(tensor_util.make_ndarray(v.tensor))
                steps.setdefault(int(event.step), {})[v.tag] = np.float32(x)
        out.append(sorted(steps.items()))
    return out


@pytest.mark.parametrize("run", ["verl_grpo_example_gsm8k_math/trtllm-qwen2-7b-tp4-8gpus",
                                 "verl_grpo_game2048/trtllm-qwen2.5-coder-7b-game2048-tp4-8gpus"])
def test_real_runs_relaunched_hold_what_tensorboard_holds(shared_data, logger_root, tmp_path, run):
    """The shared runs were launched more than once (134 steps, then a relaunch from step 0 that logged 15;
    30 steps, then two relaunches that died after the initial validation). Written through verl's file logger
    launch by launch and synced after every 10 lines, the store holds the same points as an ingest of the
    TensorBoard event files the same launches wrote (where launches overlap, the later one's values)."""
    folder = shared_data / "verl-tensorboard" / run
    project, experiment = run.split("/")
    path = logger_root / project / f"{experiment}.jsonl"
    db = f"sqlite:///{tmp_path / 's.db'}"
    launches = _launches(folder)
    n = 0
    for launch in launches:
        logger = FileLogger(project, experiment)
        for step, data in launch:
            logger.log(data=data, step=step)
            n += 1
            if n % 10 == 0:
                sync(db, path)
        logger.finish()
        sync(db, path)
    tb = f"sqlite:///{tmp_path / 'tb.db'}"
    sync_source(Store.open(tb), TensorBoardSource(str(folder)))
    cols = ["key", "step", "value"]
    ours, theirs = point_set(db)[cols], point_set(tb)[cols]
    assert len(ours) > 1000
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), theirs.reset_index(drop=True), check_exact=False,
                                  rtol=1e-7)
    runs = Store.open(db).runs_frame()
    assert runs[["name", "project"]].values.tolist() == [[experiment, project]]
    rewrites = [n for n in runs.iloc[0]["notes"] if "the file was rewritten" in n]
    last_steps = [launch[-1][0] for launch in launches]
    assert len(rewrites) == len(launches) - 1
    assert f"the new content starts at step 0; the earlier content held steps 0–{last_steps[0]}" in rewrites[0]


def test_values_that_are_not_numbers_and_bad_lines(tmp_path):
    path = tmp_path / "p" / "e.jsonl"
    path.parent.mkdir()
    lines = [{"step": 1, "data": {ENT: 0.5, "actor/pg_loss": float("nan"), "note": "warm"}},
             {"step": 2, "data": {ENT: float("inf"), "note": "hot", "hist": [1, 2]}}]
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))  # orjson: NaN and inf → null
    run = parse_verl_jsonl(path)
    series = {s.key: s for s in run.series}
    assert sorted(series) == [ENT, "actor/pg_loss"]
    assert np.isnan(series[ENT].values[1]) and np.isnan(series["actor/pg_loss"].values[0])
    assert run.notes == ("e.jsonl: key 'note' has values that are not numbers (line 1: 'warm' and 1 more "
                         "line(s)): passed over",
                         "e.jsonl: key 'hist' has values that are not numbers (line 2: [1, 2]): passed over")
    path.write_text(json.dumps(lines[0]) + "\n" + '{"step": 2, "data": {"a": 1}\n')  # a whole line, broken
    with pytest.raises(IngestError, match=r"e\.jsonl, line 2: not valid JSON"):
        parse_verl_jsonl(path)
    path.write_text(json.dumps(lines[0]) + "\n" + json.dumps({"step": -1, "data": {}}) + "\n")
    with pytest.raises(IngestError, match=r"line 2: step -1; steps must be whole numbers from 0"):
        parse_verl_jsonl(path)
    path.write_text(json.dumps(lines[0]) + "\n" + json.dumps({"step": 2, "data": 3}) + "\n")
    with pytest.raises(IngestError, match=r"line 2: expected an object with 'step' and 'data'"):
        parse_verl_jsonl(path)
    # a wide-form JSONL with a 'step' column stays a table
    wide = tmp_path / "wide.jsonl"
    wide.write_text(json.dumps({"step": 0, "entropy": 0.5}) + "\n")
    assert detect(wide, explicit=True) == "tabular"
    # verl's file under another name (VERL_FILE_LOGGER_PATH) is recognised when named as PATH
    other = tmp_path / "metrics.out"
    other.write_bytes(orjson.dumps({"step": 0, "data": {VAL: 0.2}}) + b"\n")
    assert detect(other, explicit=True) == "verl_jsonl"
