"""The store on SQLite and on a real PostgreSQL server: migrations, upserts, watermarks, reads."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import inspect

from db import Store
from db.errors import RecordError, StoreError
from db.records import RunData, RunInfo, Series


@pytest.fixture(params=["sqlite", "postgres"])
def any_store_url(request, tmp_path) -> str:
    """An empty database: a SQLite file, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def any_store(any_store_url) -> Store:
    return Store.open(any_store_url)


def _run(values=(1.0, 0.9, 0.8), steps=(1, 2, 3), name="r1") -> RunData:
    return RunData(
        RunInfo(name, name, project="p", params={"lr": 1e-6}, tags={"algorithm": "grpo"}),
        (Series.build("actor/entropy", steps, values, [100.0 + s for s in steps]),
         Series.build("val/test_score/gsm8k", [0, 2], [0.1, np.nan])),
    )


ROLES = {"actor/entropy": "entropy", "val/test_score/gsm8k": "performance"}


def test_schema_created_by_migrations(any_store):
    tables = set(inspect(any_store.engine).get_table_names())
    assert {"sources", "runs", "metric_keys", "metric_points", "analyses", "sync_state", "sync_log",
            "alembic_version"} <= tables


def test_reingest_writes_nothing_and_changes_overwrite(any_store):
    sid = any_store.source_id("file", "/logs/a.log")
    first = any_store.write_run(sid, _run(), ROLES)
    assert first.points == 5 and first.data_version == 1
    again = any_store.write_run(sid, _run(), ROLES)
    assert again.points == 0 and again.data_version == 1
    changed = any_store.write_run(sid, _run(values=(1.0, 0.95, 0.8, 0.7), steps=(1, 2, 3, 4)), ROLES)
    assert changed.points == 2 and changed.data_version == 2  # step 2 changed, step 4 new
    assert any_store.count_points() == 6
    s = any_store.series([first.run_id], ["actor/entropy"])
    assert list(s["step"]) == [1, 2, 3, 4] and list(s["value"]) == [1.0, 0.95, 0.8, 0.7]
    assert any_store.watermarks(sid) == {"r1": {"actor/entropy": 4, "val/test_score/gsm8k": 2}}


def test_nonfinite_values_are_kept_as_null_and_counted(any_store):
    sid = any_store.source_id("file", "/x")
    res = any_store.write_run(sid, _run(), ROLES)
    keys = any_store.run_keys([res.run_id]).set_index("key")
    assert keys.loc["val/test_score/gsm8k", "n"] == 2
    assert keys.loc["val/test_score/gsm8k", "n_nonfinite"] == 1
    assert keys.loc["actor/entropy", "role"] == "entropy"
    s = any_store.series([res.run_id], ["val/test_score/gsm8k"])
    assert np.isnan(s["value"].iloc[1])
    runs = any_store.runs_frame()
    assert runs.loc[0, "params"] == {"lr": 1e-6} and runs.loc[0, "source_kind"] == "file"


def test_analysis_is_stale_until_recomputed_on_new_points(any_store):
    sid = any_store.source_id("file", "/x")
    res = any_store.write_run(sid, _run(), ROLES)
    assert any_store.stale_runs("summary", 2) == [res.run_id]
    any_store.save_analysis(res.run_id, "summary", res.data_version, {"x": float("nan")},
                            {"a": 0.3, "analysis_version": 2, "status": "ok"})
    assert any_store.stale_runs("summary", 2) == []
    assert any_store.stale_runs("summary", 3) == [res.run_id]  # made by another version of the analysis
    row = any_store.analyses_frame("summary").loc[0]
    assert row["result"] == {"x": None} and row["status"] == "ok" and row["analysis_version"] == 2
    any_store.write_run(sid, _run(values=(1.0, 0.9, 0.8, 0.75), steps=(1, 2, 3, 4)), ROLES)
    assert any_store.stale_runs("summary", 2) == [res.run_id]


def test_save_analyses_batched_upsert_keeps_the_rows_one_statement_at_a_time_would(any_store, monkeypatch):
    import db.store_analyses as sa

    monkeypatch.setattr(sa, "UPSERT_BATCH", 2)  # several executemany calls in one transaction
    sid = any_store.source_id("file", "/x")
    ids = [any_store.write_run(sid, _run(name=f"r{i}"), ROLES).run_id for i in range(5)]
    any_store.save_analyses([(i, "summary", 1, {"i": i}, {"a": 0.1, "n": 3, "status": "ok"}) for i in ids])
    # existing rows updated (only their given columns), new kinds with other columns, a (run, kind) twice
    any_store.save_analyses([(ids[0], "summary", 2, {"i": "new"}, {"n": np.int64(7), "r2": float("inf")}),
                             (ids[1], "forecast", 1, {"f": 1}, {"forecast_final": 0.5}),
                             (ids[1], "forecast", 1, {"f": 2}, {"forecast_final": 0.6}),
                             (ids[2], "summary", 3, {"i": 2}, {"status": "degenerate"})])
    df = any_store.analyses_frame("summary").set_index("run_id")
    assert len(df) == 5 and df.loc[ids[4], "result"] == {"i": ids[4]} and df.loc[ids[4], "a"] == 0.1
    first = df.loc[ids[0]]
    assert first["result"] == {"i": "new"} and first["data_version"] == 2 and first["n"] == 7
    assert first["a"] == 0.1 and first["status"] == "ok" and (first["r2"] is None or np.isnan(first["r2"]))
    assert df.loc[ids[2], "status"] == "degenerate" and df.loc[ids[2], "a"] == 0.1
    fc = any_store.analyses_frame("forecast")
    assert len(fc) == 1 and fc.loc[0, "result"] == {"f": 2} and fc.loc[0, "forecast_final"] == 0.6


def test_series_build_rejects_bad_points_naming_them():
    with pytest.raises(RecordError, match=r"run\.csv, key 'h': value 'abc' is not a number"):
        Series.build("h", [1, 2], [0.5, "abc"], where="run.csv")
    with pytest.raises(RecordError, match="negative step -1"):
        Series.build("h", [-1, 2], [0.5, 0.4])
    with pytest.raises(RecordError, match="step 1.5 is not an integer"):
        Series.build("h", [1.5, 2], [0.5, 0.4])
    dup = Series.build("h", [3, 1, 3], [0.1, 0.2, 0.3], [10.0, 5.0, 7.0])  # latest wall time wins
    assert list(dup.steps) == [1, 3] and list(dup.values) == [0.2, 0.1]


def test_open_without_create_says_which_command_fixes_it(tmp_path):
    with pytest.raises(StoreError, match="entropy-dash init"):
        Store.open(f"sqlite:///{tmp_path / 'none.db'}", create=False)


def test_points_fast_path_matches_series(any_store):
    sid = any_store.source_id("file", "/x")
    res = any_store.write_run(sid, _run(), ROLES)
    pts = any_store.points(res.run_id, "val/test_score/gsm8k")
    assert pts.shape == (2, 3) and list(pts[:, 0]) == [0, 2] and pts[0, 1] == 0.1 and np.isnan(pts[1, 1])
    h = any_store.points(res.run_id, "actor/entropy")
    assert list(h[:, 2]) == [101.0, 102.0, 103.0]
    assert any_store.points(res.run_id, "no/such/key").shape == (0, 3)


def test_two_processes_create_a_new_store_at_once(any_store_url):
    """Both migrate the same empty database; the second waits for the first and finds the schema at head."""
    import subprocess
    import sys

    code = "import sys; from db import Store; Store.open(sys.argv[1]); print('ok')"
    procs = [subprocess.Popen([sys.executable, "-c", code, any_store_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert sorted(inspect(Store.open(any_store_url).engine).get_table_names()).count("metric_points") == 1


def test_a_store_from_before_the_downsampled_levels_gets_them_when_a_writer_opens_it(tmp_path):
    from alembic import command

    from db.migrate import alembic_config, current_revision

    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store.open(url)
    sid = store.source_id("file", "/x")
    steps = np.arange(1, 5001)
    run = RunData(RunInfo("a", "a"), (Series.build("actor/entropy", steps, np.exp(-steps / 1000)),))
    store.write_run(sid, run, {"actor/entropy": "entropy"})
    levels = store.lod_levels([1], ["actor/entropy"])
    assert len(levels)
    command.downgrade(alembic_config(store.engine), "0002")  # as a store written by the first release
    store.engine.dispose()
    assert current_revision(store.engine) == "0002"
    with pytest.raises(StoreError, match="has schema revision 0002"):
        Store.open(url, create=False)  # a reader says what to do, and writes nothing
    reopened = Store.open(url)  # a writer upgrades it and fills the levels from the stored points
    again = reopened.lod_levels([1], ["actor/entropy"])
    assert again["n"].tolist() == levels["n"].tolist() and reopened.count_points() == 5000
    # (the downgrade recreated tables: with SQLite's foreign keys on, that would have emptied metric_points)
