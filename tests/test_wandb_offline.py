"""W&B offline runs: real ``.wandb`` files written by ``wandb.init(mode="offline")`` in a subprocess, read back
with ``WandbOfflineSource`` (our own reader of the LevelDB-style record log)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from wandb.proto import wandb_internal_pb2 as pb

from db import Store
from db.records import RunData
from ingest.errors import IngestError
from ingest.wandb_offline import BLOCK_LEN, RecordLog, WandbOfflineSource

WRITER = r'''
import math, sys
import numpy as np
import wandb

root = sys.argv[1]

def entropy(s):
    return 1.0 / (s + 1)

# three runs in one wandb/ folder
run = wandb.init(mode="offline", dir=f"{root}/proj", project="gsm8k-grpo", entity="lab", id="alpha001",
                 name="qwen-7b-grpo", tags=["grpo", "7b"], group="sweep1", job_type="train",
                 config={"lr": 1e-6, "model": {"name": "Qwen2.5-7B", "size": 7}, "algorithm": "grpo"})
for s in range(30):
    row = {"actor/entropy": entropy(s), "critic/score/mean": s * 0.01, "sample_text": f"answer {s}"}
    if s == 3:
        row["actor/entropy"] = float("nan")
    if s == 4:
        row["critic/score/mean"] = float("inf")
    if s % 5 == 0:
        row["val-core/gsm8k/acc/mean@1"] = 0.25 + s / 100
    row["maybe"] = "n/a" if s == 2 else float(s)
    if s == 0:
        row["weights"] = wandb.Histogram(np.arange(10))
        row["nested"] = {"kl": 0.5}
    run.log(row)
run.config.update({"later": 5})
run.finish()

run = wandb.init(mode="offline", dir=f"{root}/proj", project="gsm8k-grpo", id="beta0002", name="qwen-1b-ppo",
                 config={"lr": 3e-6, "algorithm": "ppo"})
for s in range(12):
    run.log({"actor/entropy": 2.0 - s * 0.1, "critic/score/mean": s * 0.02})
run.finish()

run = wandb.init(mode="offline", dir=f"{root}/proj", project="gsm8k-grpo", id="empty003", name="no-logs")
run.finish()

# a run whose step 3 row is bigger than a 32 KiB block: FIRST/MIDDLE/LAST fragments
run = wandb.init(mode="offline", dir=f"{root}/frag", project="big", id="frag0004")
for s in range(6):
    row = {"actor/entropy": entropy(s)}
    if s == 3:
        row["dump"] = "x" * 80000
    run.log(row)
run.finish()
'''


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All offline runs, written once per module by a real wandb in one subprocess (no network)."""
    root = tmp_path_factory.mktemp("wandb_runs")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true", WANDB_DISABLE_CODE="true",
        WANDB_CONSOLE="off", WANDB_X_DISABLE_STATS="true", WANDB_X_DISABLE_META="true",
        WANDB_CONFIG_DIR=str(root / "cfg"), WANDB_CACHE_DIR=str(root / "cache"), WANDB_DATA_DIR=str(root / "data"),
    )
    proc = subprocess.run(
        [sys.executable, "-c", WRITER, str(root)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def read(uri: Path | str, watermarks: dict | None = None) -> dict[str, RunData]:
    return {rd.run.external_id: rd for rd in WandbOfflineSource(str(uri)).iter_runs(watermarks or {})}


def series(rd: RunData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {s.key: (s.steps, s.values) for s in rd.series}


def wandb_file(root: Path, run_id: str) -> Path:
    (path,) = [p for p in root.rglob(f"run-{run_id}.wandb") if "latest-run" not in p.parts]
    return path


def record_offsets(path: Path) -> list[tuple[int, pb.Record]]:
    out = []
    for offset, payload in RecordLog(path).payloads():
        rec = pb.Record()
        rec.ParseFromString(payload)
        out.append((offset, rec))
    return out


def history_offset(path: Path, step: int) -> int:
    for offset, rec in record_offsets(path):
        if rec.WhichOneof("record_type") == "history":
            items = {".".join(i.nested_key) or i.key: i.value_json for i in rec.history.item}
            if items.get("_step") == str(step):
                return offset
    raise AssertionError(f"no history record for step {step} in {path}")


# ------------------------------------------------------------------------------------------ tests
def test_folder_of_several_runs(runs_root: Path) -> None:
    src = WandbOfflineSource(str(runs_root / "proj" / "wandb"))
    assert src.kind == "wandb-offline"
    assert src.count_runs() == 3
    runs = read(runs_root / "proj" / "wandb")
    assert set(runs) == {"alpha001", "beta0002", "empty003"}

    alpha = runs["alpha001"].run
    assert alpha.name == "qwen-7b-grpo"
    assert alpha.project == "gsm8k-grpo"
    assert alpha.status == "finished"
    assert dict(alpha.params) == {
        "lr": 1e-6, "model.name": "Qwen2.5-7B", "model.size": 7, "algorithm": "grpo", "later": 5,
    }
    assert dict(alpha.tags) == {
        "grpo": True, "7b": True, "wandb.entity": "lab", "wandb.group": "sweep1", "wandb.job_type": "train",
    }
    assert alpha.started_at is not None and alpha.updated_at is not None
    assert alpha.started_at <= alpha.updated_at

    beta = runs["beta0002"]
    assert beta.run.name == "qwen-1b-ppo" and dict(beta.run.params) == {"lr": 3e-6, "algorithm": "ppo"}
    got = series(beta)
    assert set(got) == {"actor/entropy", "critic/score/mean"}
    np.testing.assert_array_equal(got["actor/entropy"][0], np.arange(12))
    np.testing.assert_array_equal(got["actor/entropy"][1], [2.0 - s * 0.1 for s in range(12)])
    np.testing.assert_array_equal(got["critic/score/mean"][1], [s * 0.02 for s in range(12)])


def test_exact_steps_values_and_non_finite_kept(runs_root: Path) -> None:
    rd = read(runs_root / "proj")["alpha001"]
    got = series(rd)
    assert set(got) == {"actor/entropy", "critic/score/mean", "val-core/gsm8k/acc/mean@1", "maybe", "nested.kl"}
    steps, ent = got["actor/entropy"]
    np.testing.assert_array_equal(steps, np.arange(30))
    expected = [1.0 / (s + 1) for s in range(30)]
    expected[3] = math.nan
    np.testing.assert_array_equal(ent, expected)  # NaN kept, exact floats otherwise
    score = got["critic/score/mean"][1]
    assert score[4] == math.inf and score[5] == 0.05
    val_steps, val = got["val-core/gsm8k/acc/mean@1"]
    np.testing.assert_array_equal(val_steps, [0, 5, 10, 15, 20, 25])
    np.testing.assert_array_equal(val, [0.25 + s / 100 for s in range(0, 30, 5)])
    np.testing.assert_array_equal(got["nested.kl"][0], [0])
    walls = {s.key: s.wall_times for s in rd.series}["actor/entropy"]
    assert np.all(np.isfinite(walls)) and np.all(np.diff(walls) >= 0)


def test_string_and_media_values_reported_not_crash(runs_root: Path) -> None:
    rd = read(runs_root / "proj")["alpha001"]
    notes = "\n".join(rd.notes)
    assert "key 'sample_text' skipped: all 30 values are non-numeric (e.g. 'answer 0')" in notes
    assert "key 'weights' skipped: all 1 values are non-numeric" in notes  # a wandb.Histogram
    assert "key 'maybe': 1 non-numeric values skipped (e.g. 'n/a')" in notes
    steps, values = series(rd)["maybe"]
    np.testing.assert_array_equal(steps, [s for s in range(30) if s != 2])
    np.testing.assert_array_equal(values, [float(s) for s in range(30) if s != 2])
    assert not any("torn" in n for n in rd.notes)


def test_empty_run(runs_root: Path) -> None:
    rd = read(runs_root / "proj")["empty003"]
    assert rd.series == ()
    assert rd.run.name == "no-logs" and rd.run.status == "finished"
    assert any("no history rows" in n for n in rd.notes)


def test_single_run_folder_and_single_file(runs_root: Path) -> None:
    path = wandb_file(runs_root, "beta0002")
    for uri in (path.parent, path):
        runs = read(uri)
        assert list(runs) == ["beta0002"]
        assert len(series(runs["beta0002"])["actor/entropy"][0]) == 12


def test_records_split_over_blocks(runs_root: Path) -> None:
    path = wandb_file(runs_root, "frag0004")
    assert path.stat().st_size > 2 * BLOCK_LEN
    rd = read(path.parent)["frag0004"]
    steps, ent = series(rd)["actor/entropy"]
    np.testing.assert_array_equal(steps, np.arange(6))
    np.testing.assert_array_equal(ent, [1.0 / (s + 1) for s in range(6)])
    assert any("'dump' skipped: all 1 values are non-numeric (e.g. 'xxxx" in n for n in rd.notes)


def test_torn_record_reads_the_complete_prefix(runs_root: Path, tmp_path: Path) -> None:
    src = wandb_file(runs_root, "alpha001")
    cut_at = history_offset(src, 17)
    torn = tmp_path / "offline-run-torn" / src.name
    torn.parent.mkdir()
    torn.write_bytes(src.read_bytes()[: cut_at + 12])  # the step-17 record is cut inside its data
    complete = sum(1 for off, _ in record_offsets(src) if off < cut_at)

    rd = read(torn.parent)["alpha001"]
    steps, _ = series(rd)["actor/entropy"]
    np.testing.assert_array_equal(steps, np.arange(17))
    assert rd.run.status == "running" and rd.run.name == "qwen-7b-grpo"
    (note,) = [n for n in rd.notes if "torn" in n]
    assert note.startswith(f"torn record at byte {cut_at} of {torn}: ")
    assert f"read {complete} complete records before it" in note


def test_torn_fragmented_record(runs_root: Path, tmp_path: Path) -> None:
    src = wandb_file(runs_root, "frag0004")
    first = history_offset(src, 3)  # the 80 kB row starts with a FIRST fragment
    torn = tmp_path / src.name
    torn.write_bytes(src.read_bytes()[: first + BLOCK_LEN + 100])  # FIRST and part of MIDDLE/LAST
    rd = read(torn)["frag0004"]
    np.testing.assert_array_equal(series(rd)["actor/entropy"][0], [0, 1, 2])
    (note,) = [n for n in rd.notes if "torn" in n]
    assert f"torn record at byte {first} of {torn}" in note


def test_corrupt_checksum_stops_there(runs_root: Path, tmp_path: Path) -> None:
    src = wandb_file(runs_root, "beta0002")
    at = history_offset(src, 5)
    data = bytearray(src.read_bytes())
    data[at + 20] ^= 0xFF  # flip a byte of the step-5 record's data
    bad = tmp_path / src.name
    bad.write_bytes(bytes(data))
    rd = read(bad)["beta0002"]
    np.testing.assert_array_equal(series(rd)["actor/entropy"][0], np.arange(5))
    assert any(f"record at byte {at} of {bad}: checksum mismatch" in n for n in rd.notes)

    # damage far from the end of the file is called corrupt, not a write in progress
    src = wandb_file(runs_root, "frag0004")
    at = history_offset(src, 1)
    data = bytearray(src.read_bytes())
    data[at + 20] ^= 0xFF
    bad = tmp_path / "frag" / src.name
    bad.parent.mkdir()
    bad.write_bytes(bytes(data))
    rd = read(bad)["frag0004"]
    np.testing.assert_array_equal(series(rd)["actor/entropy"][0], [0])
    (note,) = [n for n in rd.notes if "record at byte" in n]
    assert note.startswith(f"corrupt record at byte {at} of {bad}: checksum mismatch; read ")


def test_bad_magic_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "offline-run-x" / "run-notwandb.wandb"
    bad.parent.mkdir()
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a wandb log" * 10)
    with pytest.raises(IngestError, match=r"run-notwandb\.wandb is not a W&B run file"):
        read(tmp_path)


def test_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="does not exist"):
        read(tmp_path / "nope")
    with pytest.raises(IngestError, match=r"no W&B run files \(run-\*\.wandb\) under"):
        read(tmp_path)


def test_rereading_is_identical_and_watermarks_filter(runs_root: Path) -> None:
    first, second = read(runs_root), read(runs_root)
    assert set(first) == {"alpha001", "beta0002", "empty003", "frag0004"}
    for rid, rd in first.items():
        assert rd.run == second[rid].run and rd.notes == second[rid].notes
        for a, b in zip(rd.series, second[rid].series, strict=True):
            assert a.key == b.key
            np.testing.assert_array_equal(a.steps, b.steps)
            np.testing.assert_array_equal(a.values, b.values)
            np.testing.assert_array_equal(a.wall_times, b.wall_times)

    newer = read(runs_root / "proj", {"alpha001": {"actor/entropy": 20, "val-core/gsm8k/acc/mean@1": 25}})
    got = series(newer["alpha001"])
    np.testing.assert_array_equal(got["actor/entropy"][0], np.arange(21, 30))
    assert "val-core/gsm8k/acc/mean@1" not in got  # nothing beyond its watermark
    np.testing.assert_array_equal(got["critic/score/mean"][0], np.arange(30))


def test_resumed_run_files_merge(runs_root: Path, tmp_path: Path) -> None:
    """Two files with one run id (a resumed run, or a copy) are read into one run, points deduplicated."""
    src = wandb_file(runs_root, "beta0002")
    for name in ("offline-run-20250101_000000-beta0002", "offline-run-20250102_000000-beta0002"):
        (tmp_path / name).mkdir()
        shutil.copy(src, tmp_path / name / src.name)
    runs = read(tmp_path)
    assert list(runs) == ["beta0002"]
    np.testing.assert_array_equal(series(runs["beta0002"])["actor/entropy"][0], np.arange(12))


def test_store_round_trip_and_reingest_adds_nothing(runs_root: Path, store: Store) -> None:
    """What the reader yields is storable as is (params/tags JSON, aware datetimes); a re-read adds nothing."""
    src = WandbOfflineSource(str(runs_root / "proj"))
    sid = store.source_id(src.kind, src.uri)
    first = sum(store.write_run(sid, rd, {}).points for rd in src.iter_runs(store.watermarks(sid)))
    assert first == 30 + 30 + 6 + 29 + 1 + 12 + 12  # alpha's five keys, beta's two
    again = sum(store.write_run(sid, rd, {}).points for rd in src.iter_runs(store.watermarks(sid)))
    assert again == 0
    runs = store.runs_frame().set_index("external_id")
    assert runs.loc["alpha001", "name"] == "qwen-7b-grpo"


def test_offline_runs_are_stored_as_wandb_offline(runs_root: Path, tmp_path: Path, capsys) -> None:
    """Both spellings of the command store the kind ``wandb-offline``, and ``runs --json`` shows it."""
    import json

    from entropy_dash.cli import main

    db = f"sqlite:///{tmp_path / 's.db'}"
    folder = runs_root / "proj" / "wandb"
    assert main(["ingest", "wandb", "--offline", str(folder), "--db", db, "--no-analyse", "-q"]) == 0
    assert main(["ingest", "wandb-offline", str(folder), "--db", db, "-q"]) == 0  # the same source again
    capsys.readouterr()
    assert main(["runs", "--json", "--db", db]) == 0
    doc = json.loads(capsys.readouterr().out)
    runs = doc["runs"] if isinstance(doc, dict) else doc
    assert runs and {r["source_kind"] for r in runs} == {"wandb-offline"}
    assert {r["source"] for r in runs} == {f"wandb-offline {folder.resolve()}"}
    assert len(Store.open(db).sources_frame()) == 1
