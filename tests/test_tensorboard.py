"""TensorBoard event folders written by tensorboard's own writers (tensor scalars and simple_value events)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary import Writer
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from ingest.errors import IngestError
from ingest.tensorboard import TensorBoardSource
from ingest.tensorboard_events import read_records


def _tensor_scalars(folder: Path, points: dict[str, list[tuple[int, float]]], t0: float = 1_700_000_000.0) -> None:
    """TF2-style: tensor summaries with the scalars plugin metadata (tensorboard.summary.Writer)."""
    w = Writer(str(folder))
    for tag, pts in points.items():
        for step, value in pts:
            w.add_scalar(tag, value, step, wall_time=t0 + step)
    w.close()


def _simple_values(folder: Path, points: list[tuple[str, int, float, float]]) -> Path:
    """PyTorch/tensorboardX-style: Event(summary=Summary(value=[Value(tag, simple_value)]))."""
    w = EventFileWriter(str(folder))
    for tag, step, value, wall in points:
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
        w.add_event(event_pb2.Event(wall_time=wall, step=step, summary=summary))
    w.close()
    return next(folder.glob("events.out.tfevents.*"))


def _runs(root: Path) -> dict[str, object]:
    return {r.run.name: r for r in TensorBoardSource(str(root)).iter_runs({})}


def _series(run, key):
    return next(s for s in run.series if s.key == key)


def test_tensor_scalars_and_simple_values_in_nested_folders(tmp_path):
    _tensor_scalars(tmp_path / "grpo" / "seed1", {"actor/entropy": [(s, 1.0 - s / 10) for s in range(1, 6)],
                                                  "val-core/gsm8k/acc/mean@1": [(0, 0.2), (5, 0.5)]})
    _simple_values(tmp_path / "ppo", [("train/entropy", s, 0.5 / s, 1e9 + s) for s in range(1, 4)])
    src = TensorBoardSource(str(tmp_path))
    src.check()
    assert src.count_runs() == 2
    runs = _runs(tmp_path)
    assert sorted(runs) == ["grpo/seed1", "ppo"]
    ent = _series(runs["grpo/seed1"], "actor/entropy")
    assert ent.steps.tolist() == [1, 2, 3, 4, 5]
    assert ent.values.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5], rel=1e-6)  # float32 on disk
    assert ent.wall_times.tolist() == [1_700_000_001.0 + i for i in range(5)]
    assert _series(runs["grpo/seed1"], "val-core/gsm8k/acc/mean@1").steps.tolist() == [0, 5]
    ppo = _series(runs["ppo"], "train/entropy")
    assert ppo.steps.tolist() == [1, 2, 3] and ppo.values[0] == pytest.approx(0.5)
    assert runs["ppo"].run.external_id == str((tmp_path / "ppo").resolve())
    assert runs["ppo"].notes == ()


def test_restarted_writer_later_wall_time_wins(tmp_path):
    _simple_values(tmp_path / "r", [("loss", 1, 1.0, 100.0), ("loss", 2, 2.0, 101.0)])
    # a second writer (restart) in the same folder: a second file
    _simple_values(tmp_path / "r", [("loss", 2, 5.0, 200.0), ("loss", 3, 6.0, 201.0)])
    assert len(list((tmp_path / "r").glob("events.out.tfevents.*"))) == 2
    run = _runs(tmp_path)["r"]
    s = _series(run, "loss")
    assert s.steps.tolist() == [1, 2, 3] and s.values.tolist() == [1.0, 5.0, 6.0]
    (note,) = run.notes  # the overlap is said, with its steps, its files and which values were kept
    assert note.startswith("restarts: 2 launches of the trainer in this folder log the same steps — step 2 (")
    assert note.endswith("for those steps the later launch's values are kept")


def test_real_restarted_run_notes_the_overlap(shared_data):
    runs = _runs(shared_data / "verl-tensorboard" / "verl_grpo_example_gsm8k_math")
    (run,) = runs.values()
    (note,) = [n for n in run.notes if n.startswith("restarts")]
    assert "2 launches" in note and "steps 0–15" in note
    first, later = sorted(p.name for p in (shared_data / "verl-tensorboard").rglob("events.out.tfevents.1772*"))
    assert first.startswith("events.out.tfevents.1772808730") and note.index(first) < note.index(later)


def test_truncated_file_reads_complete_records_and_notes(tmp_path):
    path = _simple_values(tmp_path / "t", [("e", s, float(s), 1e9 + s) for s in range(10)])
    full = path.read_bytes()
    path.write_bytes(full[:-7])  # killed mid-record
    (run,) = _runs(tmp_path).values()
    assert _series(run, "e").steps.tolist() == list(range(9))
    assert "truncated record at byte" in run.notices[0] and "complete records" in run.notices[0]
    path.write_bytes(full[: len(full) - 30])
    assert read_records(path).truncated_at is not None


def test_torn_header_is_truncation_too(tmp_path):
    path = _simple_values(tmp_path / "t", [("e", 1, 1.0, 1e9)])
    path.write_bytes(path.read_bytes() + b"\x10\x00\x00")
    scan = read_records(path)
    assert scan.truncated_at == len(path.read_bytes()) - 3


def test_corrupt_record_names_the_file(tmp_path):
    path = _simple_values(tmp_path / "c", [("e", s, float(s), 1e9 + s) for s in range(5)])
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # inside the last record's payload: complete but wrong
    path.write_bytes(bytes(data))
    _simple_values(tmp_path / "good", [("e", 1, 1.0, 1e9)])
    src = TensorBoardSource(str(tmp_path))
    assert [r.run.name for r in src.iter_runs({})] == ["good"]  # the bad folder is skipped and named
    (failure,) = src.failures
    assert re.search(rf"{path.name}: corrupt event file: record at byte \d+ fails its data", failure)
    (tmp_path / "c" / path.name).write_bytes(b"not an event file at all, definitely not")
    src = TensorBoardSource(str(tmp_path))
    src.fail_fast = True
    with pytest.raises(IngestError, match="fails its length checksum"):
        list(src.iter_runs({}))


def test_non_scalar_summaries_are_skipped_with_a_note(tmp_path):
    w = EventFileWriter(str(tmp_path / "h"))
    histo = summary_pb2.HistogramProto(min=0, max=1, num=2, sum=1, sum_squares=1, bucket_limit=[1], bucket=[2])
    w.add_event(event_pb2.Event(step=1, wall_time=1.0, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag="weights", histo=histo),
               summary_pb2.Summary.Value(tag="loss", simple_value=0.25)])))
    w.close()
    (run,) = _runs(tmp_path).values()
    assert [s.key for s in run.series] == ["loss"]
    assert "1 non-scalar tags skipped: weights" in run.notes


def test_nan_scalar_is_kept(tmp_path):
    _tensor_scalars(tmp_path / "n", {"e": [(1, float("nan")), (2, 0.5)]})
    s = _series(_runs(tmp_path)["n"], "e")
    assert np.isnan(s.values[0]) and s.values[1] == 0.5


def test_root_with_events_directly_and_missing_folders(tmp_path):
    _tensor_scalars(tmp_path / "logs", {"e": [(1, 0.5)]})
    assert list(_runs(tmp_path / "logs")) == ["logs"]
    with pytest.raises(IngestError, match="no such folder"):
        TensorBoardSource(str(tmp_path / "absent")).check()
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match=r"no TensorBoard event files"):
        TensorBoardSource(str(tmp_path / "empty")).check()
