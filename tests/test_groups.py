"""The grouped view (median and interquartile band per group against step) equals a direct numpy computation
on the stored points, whether the page reads a stored level or every point, on SQLite and PostgreSQL; its
buckets follow the data (per step and per evaluation on the real 106- and 435-step verl runs); the
runs-as-points view (ceiling against entropy spent) and its readability at 500 runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dashboard.data import build_bucket_series, group_series, lod_levels, step_spans
from dashboard.group_figures import MANY_POINTS, bands_figure, points_figure
from dashboard.grouping import (
    bucket_width,
    data_spacing,
    first_last,
    group_bands,
    group_choices,
    group_of,
    group_table,
    level_of_width,
    limit_groups,
    run_points,
)
from db import Store, lod
from db.records import RunData, RunInfo, Series
from tests import analyses

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
    """Median/IQR per group straight from every stored point: bucket k ends at step k·width; each run's last
    finite value at or before it (inside the run's own buckets, ceil(first/width) … ceil(last/width)), then
    numpy over the group's runs."""
    pts = {i: store.points(i, key) for i in groups}
    pts = {i: p[np.isfinite(p[:, 1])] for i, p in pts.items()}

    def bucket(step: float) -> int:
        return -int(-step // width)

    first = min(bucket(p[0, 0]) for p in pts.values())
    last = max(bucket(p[-1, 0]) for p in pts.values())
    out = {}
    for g in sorted(set(groups.values())):
        cols = []
        for b in range(first, last + 1):
            vals = []
            for i, p in pts.items():
                if groups[i] != g or not (bucket(p[0, 0]) <= b <= bucket(p[-1, 0])):
                    continue
                before = p[p[:, 0] <= b * width]
                if len(before):
                    vals.append(before[-1, 1])
            cols.append(vals)
        out[g] = {"median": [np.median(v) if v else np.nan for v in cols],
                  "q25": [np.percentile(v, 25) if v else np.nan for v in cols],
                  "q75": [np.percentile(v, 75) if v else np.nan for v in cols],
                  "n": [len(v) for v in cols], "steps": [min(b * width, max(p[-1, 0] for p in pts.values()))
                                                         for b in range(first, last + 1)]}
    return out


def _assert_bands_equal(bands, ref) -> None:
    by_group = {b.group: b for b in bands}
    assert sorted(by_group) == sorted(ref)
    for g, want in ref.items():
        b = by_group[g]
        np.testing.assert_array_equal(b.n_runs, want["n"])
        np.testing.assert_array_equal(b.step, want["steps"])
        for stat in ("median", "q25", "q75"):
            np.testing.assert_allclose(getattr(b, stat), want[stat], rtol=1e-12, equal_nan=True, err_msg=stat)


def test_group_bands_equal_numpy_on_the_stored_points(group_store):
    store, groups = group_store
    last = max(int(store.points(i, H)[-1, 0]) for i in groups)
    width = bucket_width(1, last)
    # 15,900 steps: 40 steps a bucket fill 400 buckets; rounded to a multiple of level 1 (32) the level holds
    # every bucket's end exactly
    assert width == 64 and level_of_width(64) == 1 and lod.width(1) == 32
    levels = store.lod_levels(list(groups), [H, R])
    for key in (H, R):
        have = set(levels[(levels["key"] == key) & (levels["level"] == 1)]["run_id"])
        assert have == set(groups)  # every series has the level finer than the buckets: the page reads it
        from_level = {i: build_bucket_series(store, i, key, width, 1) for i in groups}
        from_points = {i: build_bucket_series(store, i, key, width, None) for i in groups}
        for i in groups:
            np.testing.assert_array_equal(from_level[i][0], from_points[i][0])
            np.testing.assert_array_equal(from_level[i][1], from_points[i][1])
        ref = _reference_bands(store, key, groups, width)
        assert sorted(ref) == sorted(MODELS)
        _assert_bands_equal(group_bands(from_level, groups, width), ref)
        bands = {b.group: b for b in group_bands(from_level, groups, width)}
        for g in MODELS:
            assert bands[g].run_ids == tuple(sorted(i for i in groups if groups[i] == g))
        # a width that is a multiple of the level's (as when the score's spacing asks for coarser buckets)
        # is exact too, from the same rows
        _assert_bands_equal(group_bands(from_level, groups, 4 * width), _reference_bands(store, key, groups,
                                                                                         4 * width))
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
    results = [analyses.analysis(run_id=1, run="a", status="ok", law=law),
               analyses.analysis(run_id=2, run="b", status="ok", law={**law, "ceiling": 0.9}),
               analyses.analysis(run_id=3, run="c", status="failed", reason="too few evaluations", law=None),
               analyses.analysis(run_id=4, run="d", status="ok", law={**law, "ceiling": 0.7})]
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
    results = [analyses.analysis(run_id=i, run=f"run-{i}", status="ok" if i % 50 else "degenerate",
                                 law={"ceiling": 0.7 + 0.02 * (i % 8) + 0.01 * rng.standard_normal(),
                                      "ceiling_lo": 0.6, "ceiling_hi": 0.9}) for i in groups]
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


@pytest.fixture(params=["sqlite", "postgres"])
def real_store(request, tmp_path, verl_logs) -> tuple[str, dict[int, str]]:
    """The real verl console logs (two 435-step Qwen runs, one 106-step gemma run; validation every 10 steps)
    ingested into a store: {run_id: model}."""
    from ingest.keys import resolve_roles
    from ingest.verl_log import parse_verl_log

    url = f"sqlite:///{tmp_path / 'real.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store.open(url)
    sid = store.source_id("file", str(verl_logs[0].parent))
    models = {}
    for path in verl_logs:
        run = parse_verl_log(path)
        res = store.write_run(sid, run, resolve_roles(run.all_keys(), {}))
        models[res.run_id] = path.name.split("-")[0]
    return url, models


def _group_series(url: str, ids: list[int], key: str):
    store = Store.open(url, create=False)
    version = store.data_version()
    wanted = tuple((i, 0, key) for i in ids)
    spans = step_spans(url, version, tuple(ids), (key,))
    return group_series(url, wanted, spans, lod_levels(url, version, tuple(ids), (key,)))


def test_buckets_follow_real_short_runs_per_step_and_per_evaluation(real_store):
    """A group of the real 106-step verl run is drawn per step (entropy) and per evaluation (score), not from
    the stored levels' 32-step buckets; with the 435-step runs, buckets of 2 steps (218 of them) and still per
    evaluation — each equal to numpy on every stored point."""
    from tests.real_logs import ENTROPY, SCORE

    url, models = real_store
    store = Store.open(url, create=False)
    gemma = [i for i, m in models.items() if m == "gemma"]
    assert len(gemma) == 1 and len(models) == 3
    h = _group_series(url, gemma, ENTROPY)
    r = _group_series(url, gemma, SCORE)
    assert (h.width, r.width, h.from_level, r.from_level) == (1, 10, 0, 0)
    groups = {gemma[0]: "gemma"}
    (hb,) = group_bands(h.series, groups, h.width)
    stored = store.points(gemma[0], ENTROPY)
    assert hb.step.tolist() == stored[:, 0].tolist() == list(range(1, 107))  # every step, from the first
    np.testing.assert_array_equal(hb.median, stored[:, 1])
    (rb,) = group_bands(r.series, groups, r.width)
    evals = store.points(gemma[0], SCORE)
    assert rb.step.tolist() == evals[:, 0].tolist() == list(range(0, 101, 10))  # every evaluation, at its step
    np.testing.assert_array_equal(rb.median, evals[:, 1])

    every = dict.fromkeys(models, "all")
    for key, want_width in ((ENTROPY, 2), (SCORE, 10)):
        got = _group_series(url, list(models), key)
        assert got.width == want_width == bucket_width(1 if key == ENTROPY else 0, 435,
                                                       data_spacing(got.series))
        ref = _reference_bands(store, key, every, got.width)
        _assert_bands_equal(group_bands(got.series, every, got.width), ref)
    (score,) = group_bands(_group_series(url, list(models), SCORE).series, every, 10)
    assert score.step[[0, 1, -2, -1]].tolist() == [0, 10, 430, 435]  # the last evaluation at its own step
    assert score.n_runs[0] == 3 and score.n_runs[-1] == 2  # gemma ended at step 100


def test_bucket_width_rule():
    assert bucket_width(1, 106) == 1 and bucket_width(0, 100, 10) == 10  # per step, per evaluation
    assert bucket_width(1, 2_000) == 5 and bucket_width(0, 2_000, 20) == 20  # 2,000 steps: 400 buckets of 5
    assert bucket_width(0, 20_000) == 64 and level_of_width(64) == 1  # 50 → a multiple of level 1's 32
    assert bucket_width(0, 200_000) == 512 and level_of_width(512) == 3
    assert level_of_width(31) is None and level_of_width(96) == 1 and level_of_width(384) == 2
    assert data_spacing({1: (np.array([0, 10, 20, 35]), np.ones(4)), 2: (np.array([5.0]), np.ones(1))}) == 10
