"""Pages at many runs read only what they show: the Runs table filtered and paged in SQL (``Store.runs_page``,
equal to filtering every run in Python), its filter values in SQL, and the Sources page's counts from the runs
table and the sync log (``Store.source_summary``), on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard.tables import sources_table, tag_list
from db import Store
from db.records import RunData, RunInfo, Series

H = "actor/entropy"
ROLES = {H: "entropy"}
N_RUNS = 230


@pytest.fixture(params=["sqlite", "postgres"])
def sweep(request, tmp_path) -> Store:
    """230 runs from two sources: projects, models, algorithms and tags cycling; names with ``%`` and ``_``."""
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store.open(url)
    a = store.source_id("file", "/sweep-a")
    b = store.source_id("mlflow", "http://tracker")
    store.source_id("file", "/never-synced")
    for sid in (a, b):
        log = store.start_sync(sid)
        n = 0
        for i in range(N_RUNS if sid == a else 5):
            name = f"run-{i:03d}" + ("_100%" if i % 50 == 7 else "") + ("-Big" if i % 9 == 0 else "")
            info = RunInfo(f"{sid}-{i}", name, project=f"p{i % 3}", model=("0.5B", "7B")[i % 2],
                           algorithm=("grpo", "ppo", "rloo")[i % 3],
                           tags={"seed": str(i % 4), "intervention": ("none", "clip-cov")[i % 2], "mlflow.user": "x"})
            steps = np.arange(1, 11 + i % 5)
            n += store.write_run(sid, RunData(info, (Series.build(H, steps, 1.0 / steps),)), ROLES).points
        store.finish_sync(log, runs=N_RUNS if sid == a else 5, points=n)
    log = store.start_sync(b)
    store.finish_sync(log, runs=5, points=0, error="server said 503")
    return store


def _python_filter(runs: pd.DataFrame, projects=(), models=(), algorithms=(), tags=(), search="") -> list[int]:
    keep = []
    for r in runs.itertuples(index=False):
        if (projects and r.project not in projects) or (models and r.model not in models) \
                or (algorithms and r.algorithm not in algorithms):
            continue
        if not set(tags) <= set(tag_list(r.tags)):
            continue
        if search.strip() and search.strip().lower() not in r.name.lower():
            continue
        keep.append(int(r.id))
    return keep


@pytest.mark.parametrize("filters", [
    {},
    {"projects": ["p1"]},
    {"models": ["7B"], "algorithms": ["ppo", "rloo"]},
    {"tags": ["seed=2", "intervention=none"]},
    {"tags": ["seed=3"], "projects": ["p0", "p2"]},
    {"search": "BIG"},
    {"search": "_100%"},  # plain text: % and _ match only themselves
    {"search": "0%"},
    {"search": "nothing like it"},
])
def test_runs_page_filters_and_pages_in_sql_like_python(sweep, filters):
    every = sweep.runs_frame()
    want = _python_filter(every, **filters)
    got: list[int] = []
    size = 40
    for offset in range(0, N_RUNS + 5 + size, size):
        total, page = sweep.runs_page(**filters, offset=offset, limit=size)
        assert total == len(want)
        assert len(page) <= size
        got += [int(i) for i in page["id"]]
    assert got == want  # every matching run once, in id order, across the pages
    if filters.get("search") == "_100%":
        assert len(want) == 5 and all("_100%" in n for n in every.set_index("id").loc[want, "name"])
    total, page = sweep.runs_page(**filters, offset=0, limit=3)
    if want:  # a page carries the runs_frame columns (source kind, masked uri)
        pd.testing.assert_frame_equal(page.reset_index(drop=True),
                                      every.set_index("id").loc[want[:3]].reset_index()[list(page.columns)],
                                      check_dtype=False)


def test_filter_values_and_names_from_sql(sweep):
    vals = sweep.run_filter_values()
    assert vals["project"] == ["p0", "p1", "p2"] and vals["model"] == ["0.5B", "7B"]
    assert vals["algorithm"] == ["grpo", "ppo", "rloo"]
    assert vals["tags"] == ["intervention=clip-cov", "intervention=none", "seed=0", "seed=1", "seed=2", "seed=3"]
    names = sweep.run_names()
    assert len(names) == N_RUNS + 5 and names[min(names)] == "run-000-Big"


def test_sources_page_counts_come_from_the_sync_log(sweep):
    summary = sweep.source_summary().set_index("uri")
    table = sources_table(sweep.source_summary()).set_index("uri")
    points_a = int(sum(10 + i % 5 for i in range(N_RUNS)))
    assert table.loc["/sweep-a", "runs"] == N_RUNS and table.loc["/sweep-a", "syncs"] == 1
    assert table.loc["/sweep-a", "points written by syncs"] == points_a == sweep.count_points() - 5 * 10 - 10
    assert table.loc["/sweep-a", "status"] == "ok" and table.loc["/sweep-a", "points last sync"] == points_a
    assert table.loc["http://tracker", "syncs"] == 2 and table.loc["http://tracker", "status"] == "error"
    assert table.loc["http://tracker", "error"] == "server said 503"
    assert table.loc["http://tracker", "points last sync"] == 0 and table.loc["http://tracker", "runs"] == 5
    assert table.loc["/never-synced", "status"] == "never synced" and table.loc["/never-synced", "runs"] == 0
    assert summary.loc["/never-synced", "syncs"] == 0
