"""Growing files are tailed: CSV, JSONL, verl console logs and TensorBoard event files are parsed from where
the last sync stopped; rewritten or truncated files are read afresh; unchanged files are not opened.

The yardstick is a clean ingest of the final file into a fresh store: after any sequence of appends (at line
ends or mid-line) the tailed store holds exactly its points."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

import ingest.files as files_module
import ingest.tabular as tabular
import ingest.tailing as tailing
import ingest.tensorboard_events as tb_module
from db import Store
from ingest.files import FileSource
from ingest.sync import sync_source
from ingest.tensorboard import TensorBoardSource
from tests.test_faults import point_set
from tests.test_tensorboard import _simple_values
from tests.test_trl_state import save, trainer_state

ENT, ACC = "actor/entropy", "val-core/gsm8k/acc/mean@1"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    return request.getfixturevalue("postgres_url")


def sync(db: str, path: Path, kind: str = "file"):
    source = FileSource(str(path)) if kind == "file" else TensorBoardSource(str(path))
    return sync_source(Store.open(db), source)


def clean(tmp_path: Path, path: Path, kind: str = "file") -> pd.DataFrame:
    fresh = f"sqlite:///{tmp_path / f'clean-{random.random()}.db'}"
    sync(fresh, path, kind)
    return point_set(fresh)


def assert_same(db: str, tmp_path: Path, path: Path, kind: str = "file") -> None:
    pd.testing.assert_frame_equal(point_set(db), clean(tmp_path, path, kind))


def _long_lines(runs: range, steps: range, fmt: str) -> str:
    out = []
    for r in runs:
        for s in steps:
            rec = {"run": f"r{r}", "key": ENT, "step": s, "value": round(1.0 / (s + 1) + r / 100, 6)}
            out.append(json.dumps(rec) if fmt == "jsonl" else f"r{r},{ENT},{s},{rec['value']}")
            if s % 5 == 0:
                out.append(json.dumps({**rec, "key": ACC, "value": s / 100}) if fmt == "jsonl"
                           else f"r{r},{ACC},{s},{s / 100}")
    return "".join(ln + "\n" for ln in out)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_tabular_append_at_any_byte_then_rewrite_and_truncate(db, tmp_path, fmt):
    path = tmp_path / f"m.{fmt}"
    header = "run,key,step,value\n" if fmt == "csv" else ""
    full = (header + _long_lines(range(3), range(40), fmt) + _long_lines(range(3, 5), range(20), fmt)).encode()
    cuts = sorted(random.Random(7).sample(range(len(header) + 1, len(full)), 12)) + [len(full)]
    appended = 0
    for cut in cuts:  # the writer appends; a sync may land mid-line
        path.write_bytes(full[:cut])
        res = sync(db, path)
        appended += res.points
    assert_same(db, tmp_path, path)
    assert appended == len(point_set(db))  # a tail read never re-wrote points it had already stored
    # a rewrite of the same size (one value changed) and a truncation are read afresh
    changed = full.replace(b"0.333333", b"0.999999", 1)
    assert changed != full and len(changed) == len(full)
    path.write_bytes(changed)
    res = sync(db, path)
    assert res.points == 1 and any("rewritten: read afresh" in n for n in res.notes)
    assert_same(db, tmp_path, path)
    before = point_set(db)
    path.write_bytes(changed[: len(changed) // 2].rsplit(b"\n", 1)[0] + b"\n")
    res = sync(db, path)
    assert res.points == 0 and any("shorter than before" in n and "read afresh" in n for n in res.notes)
    pd.testing.assert_frame_equal(point_set(db), before)  # points of the longer content are kept


def test_unchanged_files_are_not_opened(tmp_path, monkeypatch, verl_logs):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "m.csv").write_text("run,key,step,value\n" + _long_lines(range(2), range(10), "csv"))
    (folder / "m.jsonl").write_text(_long_lines(range(2), range(10), "jsonl"))
    (folder / "run.log").write_bytes(verl_logs[0].read_bytes())
    save(folder / "trainer_state.json", trainer_state(2))  # written by transformers' TrainerState
    db = f"sqlite:///{tmp_path / 's.db'}"
    first = sync(db, folder)
    assert first.runs_seen == 2 + 2 + 1 + 1 and first.unchanged_files == 0

    def no_parsing(*args, **kwargs):
        raise AssertionError("an unchanged file was parsed")

    for name in ("read_verl_log", "parse_trainer_state", "_is_verl_log"):
        monkeypatch.setattr(files_module, name, no_parsing)
    monkeypatch.setattr(tabular, "read_table_from", no_parsing)
    again = sync(db, folder)
    assert (again.runs_seen, again.points, again.unchanged_files) == (0, 0, 4)


def test_keys_seen_and_notes_are_merged_by_a_tail_read(tmp_path):
    path = tmp_path / "k.jsonl"
    path.write_text(json.dumps({"key": ENT, "step": 1, "value": 0.5}) + "\n"
                    + json.dumps({"key": ACC, "step": 1, "value": 0.2}) + "\n"
                    + json.dumps({"key": ENT, "step": 2, "value": 1e200}) + "\n")
    db = f"sqlite:///{tmp_path / 's.db'}"
    sync(db, path)
    with path.open("a") as fh:  # only entropy is appended
        fh.write(json.dumps({"key": ENT, "step": 3, "value": 0.4}) + "\n")
    res = sync(db, path)
    assert res.points == 1
    run = Store.open(db).runs_frame().iloc[0]
    assert run["keys_seen"] == sorted([ENT, ACC])
    assert len(run["notes"]) == 1 and "step 2: value 1e+200 is too large" in run["notes"][0]


def test_verl_log_appended_at_any_byte(db, tmp_path, verl_logs, monkeypatch):
    data = next(p for p in verl_logs if p.name.startswith("gemma")).read_bytes()  # cut before its final line
    path = tmp_path / "run.log"
    start = data.index(b"step:1 - ")  # training has started: tail reads from here on
    cuts = sorted(random.Random(3).sample(range(start + 200, len(data)), 10)) + [len(data)]
    for cut in cuts:
        path.write_bytes(data[:cut])
        sync(db, path)
    assert_same(db, tmp_path, path)
    state = next(iter(Store.open(db).file_states(1).values()))
    # the log ends without a line end: its last line, just written, waits until the file has been quiet
    assert state.offset == data.rindex(b"\n") + 1 and state.parser_state["parser"]["step_offset"] == 1
    n = len(point_set(db))
    monkeypatch.setattr(files_module, "SETTLE_SECONDS", 0.0)  # … as if 5 s had passed
    monkeypatch.setattr(tailing, "SETTLE_SECONDS", 0.0)
    assert sync(db, path).points == 40  # unchanged but now quiet: the last line alone is read, and taken
    res = sync(db, path)
    assert (res.runs_seen, res.unchanged_files, len(point_set(db))) == (0, 1, n + 40)
    assert_same(db, tmp_path, path)
    run = Store.open(db).runs_frame().iloc[0]
    assert run["params"]["trainer.project_name"] == "verl_example"  # run info kept over tail reads


def test_verl_log_rewritten_by_a_restarted_run_is_read_afresh(tmp_path, verl_logs):
    data = verl_logs[0].read_bytes()
    path = tmp_path / "run.log"
    path.write_bytes(data[: len(data) // 2])
    db = f"sqlite:///{tmp_path / 's.db'}"
    sync(db, path)
    # a restarted run rewrites the log with the same config dump (same first bytes) and goes further
    rewritten = data.replace(b"timing/gen:", b"timing/gen:1")  # other timings: other step lines
    assert rewritten[:4096] == data[:4096] and rewritten[: len(data) // 2] != data[: len(data) // 2]
    path.write_bytes(rewritten)
    res = sync(db, path)
    assert any("bytes before the last read position changed" in n for n in res.notes)
    assert_same(db, tmp_path, path)


def test_tensorboard_event_files_are_tailed(tmp_path):
    root = tmp_path / "tb"
    path = _simple_values(root / "run", [(ENT, s, 1.0 / s, 1e9 + s) for s in range(1, 30)])
    full = path.read_bytes()
    db = f"sqlite:///{tmp_path / 's.db'}"
    for cut in (40, 200, 201, len(full) - 7, len(full)):  # torn records at the end are left for the next sync
        path.write_bytes(full[:cut])
        sync(db, root, "tensorboard")
    assert_same(db, tmp_path, root, "tensorboard")
    # a restarted writer adds a second file: only it is read
    _simple_values(root / "run", [(ENT, s, 2.0, 2e9 + s) for s in range(20, 40)])
    res = sync(db, root, "tensorboard")
    assert res.points == 20 and res.notes == ()
    assert_same(db, tmp_path, root, "tensorboard")
    # unchanged: no folder is read
    calls = []
    real = tb_module.read_folder
    tb_module.read_folder = lambda *a, **k: calls.append(a) or real(*a, **k)
    try:
        assert sync(db, root, "tensorboard").runs_seen == 0 and calls == []
    finally:
        tb_module.read_folder = real
    # truncated: the folder is read afresh
    path.write_bytes(full[: len(full) // 2])
    res = sync(db, root, "tensorboard")
    assert any("shorter than before" in n and "read afresh" in n for n in res.notes)


def test_offsets_move_only_with_the_points_they_gave(tmp_path, monkeypatch):
    """A sync that dies while writing the last run of a multi-run file leaves the file's offset where it was:
    the rerun reads the appended lines again and the store ends up exactly as a clean ingest."""
    path = tmp_path / "m.jsonl"
    path.write_text(_long_lines(range(3), range(10), "jsonl"))
    db = f"sqlite:///{tmp_path / 's.db'}"
    sync(db, path)
    with path.open("a") as fh:
        fh.write(_long_lines(range(3), range(10, 20), "jsonl"))
    store = Store.open(db)
    before = store.file_states(1)
    real = Store._save_file_states

    def die(self, conn, source_id, states):  # noqa: ANN001, ANN202 - wraps the real method
        raise KeyboardInterrupt  # the process is stopped inside the last run's transaction

    monkeypatch.setattr(Store, "_save_file_states", die)
    with pytest.raises(KeyboardInterrupt):
        sync(db, path)
    assert Store.open(db).file_states(1) == before  # the offset did not move…
    partial = point_set(db)
    assert set(partial["external_id"].str.rsplit("#").str[-1]) == {"r0", "r1", "r2"}
    # …nor any point: the file's runs are written in one transaction with its offset (ingest.sync.Batch)
    assert (partial.groupby("external_id")["step"].max().tolist()) == [9, 9, 9]
    monkeypatch.setattr(Store, "_save_file_states", real)
    sync(db, path)
    assert_same(db, tmp_path, path)
