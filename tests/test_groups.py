"""The grouped view (median and interquartile band per group against step) equals a direct numpy computation
on the stored points, whether the page reads a stored level or every point, on SQLite and PostgreSQL; the
runs-as-points view (ceiling against entropy spent) and its readability at 500 runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard.data import build_bucket_series
from dashboard.group_figures import MANY_POINTS, bands_figure, points_figure
from dashboard.grouping import (
    bucket_width,
    first_last,
    group_bands,
    group_choices,
    group_of,
    group_table,
    limit_groups,
    run_points,
)
from db import Store, lod
from db.records import RunData, RunInfo, Series

H, R = "actor/entropy", "val-core/gsm8k/acc/mean@1"
ROLES = {H: "entropy", R: "performance"}
MODELS = ("0.5B", "1.5B", "7B")


@pytest.fixture(params=["sqlite", "postgres"])
def group_store(request, tmp_path) -> tuple[Store, dict[int, str]]:
    """12 runs in 3 model groups, of different lengths (6,000…15,000 steps), entropy every step (a few
    non-finite values), accuracy every 10 steps (one run every 250 steps: sparse)."""
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store.open(url)
    sid = store.source_id("file", "/sweep")
    rng = np.random.default_rng(7)
    models = {}
    for i in range(12):
        n = 6_000 + 900 * i
        steps = np.arange(1, n + 1)
        h = 0.05 + 1.1 * np.exp(-steps / (2_000 + 300 * (i % 3))) * (1 + 0.1 * rng.standard_normal(n))
        if i == 4:
            h[[10, 2_000, 2_001]] = np.nan
        every = 250 if i == 7 else 10
        rs = np.arange(0, n + 1, every)
        r = 0.9 - 0.5 * np.exp(-rs / 3_000) + 0.01 * rng.standard_normal(rs.size)
        model = MODELS[i % 3]
        data = RunData(RunInfo(f"r{i}", f"run-{i}", project="sweep", model=model, algorithm="grpo",
                               tags={"intervention": ("none", "clip-cov")[i % 2]}, params={"lr": [1e-6, 2e-6][i % 2]}),
                       (Series.build(H, steps, h, 1.7e9 + 30.0 * steps), Series.build(R, rs, r)))
        models[store.write_run(sid, data, ROLES).run_id] = model
    return store, models


def _reference_bands(store: Store, key: str, groups: dict[int, str], width: int) -> dict[str, dict]:
    """Median/IQR per group straight from every stored point: for each bucket, each run's last finite value
    at or before the bucket's last step (inside the run's own buckets), then numpy over the group's runs."""
    pts = {i: store.points(i, key) for i in groups}
    pts = {i: p[np.isfinite(p[:, 1])] for i, p in pts.items()}
    first = min(int(p[0, 0]) // width for p in pts.values())
    last = max(int(p[-1, 0]) for p in pts.values())
    buckets = range(first, last // width + 1)
    out = {}
    for g in sorted(set(groups.values())):
        cols = []
        for b in buckets:
            vals = []
            for i, p in pts.items():
                if groups[i] != g or not (p[0, 0] // width <= b <= p[-1, 0] // width):
                    continue
                before = p[p[:, 0] <= (b + 1) * width - 1]
                if len(before):
                    vals.append(before[-1, 1])
            cols.append(vals)
        out[g] = {"median": [np.median(v) if v else np.nan for v in cols],
                  "q25": [np.percentile(v, 25) if v else np.nan for v in cols],
                  "q75": [np.percentile(v, 75) if v else np.nan for v in cols],
                  "n": [len(v) for v in cols]}
    return out


def test_group_bands_equal_numpy_on_the_stored_points(group_store):
    store, groups = group_store
    last = max(int(store.points(i, H)[-1, 0]) for i in groups)
    width = bucket_width(last)
    assert width == 128 and lod.width(2) == 128  # 15,900 steps: 125 buckets of 128 (497 of 32 is too many)
    levels = store.lod_levels(list(groups), [H, R])
    for key in (H, R):
        have = set(levels[(levels["key"] == key) & (levels["level"] == 2)]["run_id"])
        assert have == set(groups)  # every series has the level of that width: the page reads it
        from_level = {i: build_bucket_series(store, i, key, width, 2) for i in groups}
        from_points = {i: build_bucket_series(store, i, key, width, None) for i in groups}
        for i in groups:
            np.testing.assert_array_equal(from_level[i][0], from_points[i][0])
            np.testing.assert_array_equal(from_level[i][1], from_points[i][1])
        bands = {b.group: b for b in group_bands(from_level, groups, width)}
        ref = _reference_bands(store, key, groups, width)
        assert sorted(bands) == sorted(ref) == sorted(MODELS)
        for g, want in ref.items():
            b = bands[g]
            np.testing.assert_array_equal(b.n_runs, want["n"])
            for stat in ("median", "q25", "q75"):
                np.testing.assert_allclose(getattr(b, stat), want[stat], rtol=1e-12, equal_nan=True, err_msg=stat)
            assert b.run_ids == tuple(sorted(i for i in groups if groups[i] == g))
        # runs end at different steps: late buckets hold fewer runs, never runs that had ended
        assert bands["0.5B"].n_runs[0] == 4 and bands["0.5B"].n_runs[-1] == 0 and bands["7B"].n_runs[-1] == 1
    fig = bands_figure(group_bands(from_level, groups, width), [])
    assert {t.name for t in fig.data if t.fill != "toself"} == set(MODELS)  # a median line per group
    assert {t.name for t in fig.data if t.fill == "toself"} == set(MODELS)  # and its band


def test_runs_as_points_and_group_table():
    runs = pd.DataFrame({"id": [1, 2, 3, 4], "project": ["p", "p", "q", None], "model": ["7B", "7B", "1.5B", None],
                         "algorithm": ["grpo"] * 4,
                         "tags": [{"intervention": "clip-cov", "mlflow.user": "x"}, {}, {"seed": "1"}, {}],
                         "params": [{"lr": 1e-6}, {"lr": 2e-6}, {}, {"intervention": "kl-cov"}]})
    assert group_choices(runs) == ["project / experiment", "model", "algorithm", "intervention", "tag: intervention",
                                   "tag: seed", "param: intervention", "param: lr"]
    info = runs.set_index("id", drop=False)
    assert [group_of(info.loc[i].to_dict(), "intervention") for i in (1, 2, 4)] == ["clip-cov", "(no intervention)",
                                                                                    "kl-cov"]
    assert group_of(info.loc[4].to_dict(), "model") == "(no model)"
    assert group_of(info.loc[2].to_dict(), "param: lr") == "2e-06"
    groups = {i: group_of(info.loc[i].to_dict(), "model") for i in (1, 2, 3, 4)}
    law = {"ceiling": 0.8, "ceiling_lo": 0.75, "ceiling_hi": 0.85}
    results = [{"run_id": 1, "run": "a", "status": "ok", "law": law},
               {"run_id": 2, "run": "b", "status": "ok", "law": {**law, "ceiling": 0.9}},
               {"run_id": 3, "run": "c", "status": "failed", "reason": "too few evaluations", "law": None},
               {"run_id": 4, "run": "d", "status": "ok", "law": {**law, "ceiling": 0.7}}]
    entropy = {1: first_last(np.array([3.0, 1.0, 2.0]), np.array([0.1, 1.2, np.nan])), 2: (1.0, 0.25),
               3: (1.0, 0.5), 4: (None, None)}
    assert entropy[1] == (1.2, 0.1)  # by step, finite only
    pts = run_points(results, groups, entropy).set_index("id")
    assert pts.loc[1, "entropy spent"] == pytest.approx((1.2 - 0.1) / 1.2)
    assert pts.loc[2, "entropy spent"] == 0.75 and pts.loc[2, "ceiling"] == 0.9
    assert np.isnan(pts.loc[3, "ceiling"]) and pts.loc[3, "status"] == "failed"
    assert np.isnan(pts.loc[4, "entropy spent"])
    table = group_table(pts.reset_index()).set_index("group")
    assert table.loc["7B", "runs"] == 2 and table.loc["7B", "median ceiling"] == pytest.approx(0.85)
    assert table.loc["1.5B", "with a ceiling"] == 0 and np.isnan(table.loc["1.5B", "median ceiling"])
    fig = points_figure(pts.reset_index())
    by_name = {t.name: t for t in fig.data}
    assert len(by_name["7B"].x) == 2 and "1.5B" not in by_name and "(no model)" not in by_name  # no ceiling/H
    assert by_name["7B"].error_y.visible is True
    assert by_name["group median"].y[0] == pytest.approx(0.85)
    assert "status: failed" not in " ".join(by_name["7B"].text)


def test_runs_as_points_stay_readable_at_500_runs():
    rng = np.random.default_rng(3)
    n = 500
    groups = {i: f"group-{i % 8}" for i in range(1, n + 1)}
    results = [{"run_id": i, "run": f"run-{i}", "status": "ok" if i % 50 else "degenerate",
                "law": {"ceiling": 0.7 + 0.02 * (i % 8) + 0.01 * rng.standard_normal(),
                        "ceiling_lo": 0.6, "ceiling_hi": 0.9}} for i in groups]
    entropy = {i: (1.2, 1.2 * (1 - rng.uniform(0.3, 0.95))) for i in groups}
    pts = run_points(results, groups, entropy)
    fig = points_figure(pts)
    assert len(pts) == n > MANY_POINTS
    assert len(fig.data) == 8 + 1  # one trace per group and the group medians: a short legend
    assert sum(len(t.x) for t in fig.data) == n + 8
    runs_traces = [t for t in fig.data if t.name != "group median"]
    assert all(t.error_y.visible is False and t.marker.size <= 6 for t in runs_traces)  # light at many runs
    assert sum("status: degenerate" in s for t in runs_traces for s in t.text) == n // 50
    assert all(t.error_y.visible is True for t in points_figure(pts, intervals=True).data if t.name != "group median")


def test_limit_groups_merges_the_smallest():
    groups = {i: f"seed-{i}" for i in range(20)} | {100 + i: "big" for i in range(5)}
    limited = limit_groups(groups, 4)
    assert set(limited.values()) == {"big", "seed-0", "seed-1", "(18 other groups)"}
    assert limit_groups({1: "a", 2: "b"}, 4) == {1: "a", 2: "b"}
