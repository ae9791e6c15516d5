"""Downsampled levels (metric_lod) written at ingest: always equal to a fresh reduction of the stored points —
after an ingest, an append (updated incrementally), a rewrite of old points, a series outgrowing a level,
and on a store written before levels existed; on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from db import Store, lod
from db.records import RunData, RunInfo, Series

H, R, SHORT = "actor/entropy", "val-core/gsm8k/acc/mean@1", "perf/throughput"
ROLES = {H: "entropy", R: "performance", SHORT: "other"}


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request, tmp_path) -> Store:
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    return Store.open(url)


def _entropy(steps: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 0.05 + 1.1 * np.exp(-steps / 4000) * (1 + 0.08 * rng.standard_normal(steps.size))


def _run(steps_h: np.ndarray, h: np.ndarray, steps_r: np.ndarray, r: np.ndarray, *, short: bool = True,
         wall: bool = True) -> RunData:
    series = [Series.build(H, steps_h, h, 1.7e9 + 30.0 * steps_h if wall else None),
              Series.build(R, steps_r, r, 1.7e9 + 30.0 * steps_r if wall else None)]
    if short:
        series.append(Series.build(SHORT, np.arange(100), np.linspace(1, 2, 100)))
    return RunData(RunInfo("run-1", "run-1", project="p"), tuple(series))


def _stored(store: Store, run_id: int, key: str) -> dict[int, np.ndarray]:
    levels = store.lod_levels([run_id], [key])
    return {int(lv): store.lod_points(run_id, key, int(lv)) for lv in levels["level"]}


def _assert_fresh(store: Store, run_id: int, key: str) -> dict[int, np.ndarray]:
    """The stored levels equal a fresh reduction of the stored points, row for row."""
    fresh = lod.reduce_series(store.points(run_id, key))
    stored = _stored(store, run_id, key)
    assert sorted(stored) == sorted(fresh), key
    for level, rows in fresh.items():
        np.testing.assert_array_equal(stored[level], rows, err_msg=f"{key} level {level}")
    return stored


def test_m4_keeps_first_min_max_last_of_every_bucket():
    steps = np.arange(0, 64)
    values = np.zeros(64)
    values[[5, 40]] = 3.0   # maximum of each bucket of 32
    values[[6, 7, 50]] = -1.0  # minimum (tie in the first bucket: the earliest is kept)
    idx = lod.m4_index(steps, values, 32)
    assert idx.tolist() == [0, 5, 6, 31, 32, 40, 50, 63]
    assert lod.levels_for(1, 20_000) == [1, 2, 3]  # buckets of 32, 128, 512 steps (2,048: only 10 of them)
    assert lod.levels_for(0, 991) == [] and lod.levels_for(0, 992) == [1]  # 31 and 32 buckets of 32 steps


def test_levels_written_at_ingest_equal_a_fresh_reduction(any_store):
    sid = any_store.source_id("file", "/logs")
    steps = np.arange(1, 20_001)
    h = _entropy(steps)
    h[[17, 9_000]] = np.nan  # non-finite values are stored as NULL and kept out of the levels
    rs = np.arange(0, 20_001, 10)
    res = any_store.write_run(sid, _run(steps, h, rs, np.linspace(0.2, 0.8, rs.size)), ROLES)
    levels = _assert_fresh(any_store, res.run_id, H)
    assert sorted(levels) == [1, 2, 3]
    assert 1_000 < len(levels[1]) <= 4 * 625 and len(levels[3]) <= 4 * 40
    assert levels[1][0, 0] == 1 and levels[1][-1, 0] == 20_000  # first and last points in every level
    assert np.isfinite(levels[1][:, 1]).all() and levels[1][0, 2] == pytest.approx(1.7e9 + 30.0)
    assert sorted(_assert_fresh(any_store, res.run_id, R)) == [1, 2, 3]
    assert _assert_fresh(any_store, res.run_id, SHORT) == {}  # 100 points: read directly, no level


def test_append_rewrite_and_growth_keep_levels_equal_to_a_fresh_reduction(any_store):
    sid = any_store.source_id("file", "/logs")
    steps = np.arange(1, 20_001)
    h = _entropy(steps)
    rs = np.arange(0, 20_001, 10)
    r = np.linspace(0.2, 0.8, rs.size)
    run_id = any_store.write_run(sid, _run(steps, h, rs, r), ROLES).run_id
    before = _stored(any_store, run_id, H)

    # append 500 steps: only the last bucket of each level changes
    more = np.arange(20_001, 20_501)
    res = any_store.write_run(sid, _run(more, _entropy(more, 1), rs[-1:] + 500, np.array([0.81]), short=False), ROLES)
    assert res.points == 501
    after = _assert_fresh(any_store, run_id, H)
    _assert_fresh(any_store, run_id, R)
    for level, rows in before.items():
        w = lod.width(level)
        untouched = rows[rows[:, 0] < (20_000 // w) * w]
        np.testing.assert_array_equal(after[level][: len(untouched)], untouched)

    # rewrite old points (a spike and a dip in the middle, a changed value near the start)
    old = np.array([3, 5_000, 5_001, 12_345])
    res = any_store.write_run(sid, _run(old, np.array([0.9, 5.0, -1.0, 0.3]), rs[:0], r[:0], short=False), ROLES)
    assert res.points == 4
    after = _assert_fresh(any_store, run_id, H)
    for rows in after.values():
        assert 5.0 in rows[:, 1] and -1.0 in rows[:, 1]  # the extremes survive at every level

    # grow far enough to gain a level (4 → buckets of 2,048 steps need ≥ 32 of them: 65,536 steps)
    grow = np.arange(20_501, 70_001)
    any_store.write_run(sid, _run(grow, _entropy(grow, 2), rs[:0], r[:0], short=False), ROLES)
    assert sorted(_assert_fresh(any_store, run_id, H)) == [1, 2, 3, 4]


def test_a_store_without_levels_is_rebuilt_on_the_next_write_and_by_rebuild_lod(any_store):
    sid = any_store.source_id("file", "/logs")
    steps = np.arange(1, 8_001)
    rs = np.arange(0, 8_001, 10)
    run_id = any_store.write_run(sid, _run(steps, _entropy(steps), rs, np.linspace(0.2, 0.8, rs.size)),
                                 ROLES).run_id
    with any_store.engine.begin() as conn:  # as written before levels existed
        conn.execute(text("DELETE FROM metric_lod"))
    assert _stored(any_store, run_id, H) == {}
    more = np.arange(8_001, 8_101)
    any_store.write_run(sid, _run(more, _entropy(more, 3), rs[:0], rs[:0] * 0.0, short=False), ROLES)
    assert sorted(_assert_fresh(any_store, run_id, H)) == [1, 2]  # rebuilt from every point, not just the new
    assert _stored(any_store, run_id, R) == {}  # R did not change: still without levels (readers read points)
    assert any_store.rebuild_lod() > 0
    _assert_fresh(any_store, run_id, H)
    assert sorted(_assert_fresh(any_store, run_id, R)) == [1, 2]


def test_reingest_of_unchanged_points_writes_no_levels(any_store):
    sid = any_store.source_id("file", "/logs")
    steps = np.arange(1, 5_001)
    data = _run(steps, _entropy(steps), steps[::10], np.linspace(0.2, 0.8, 500))
    run_id = any_store.write_run(sid, data, ROLES).run_id
    n_before = int(any_store.lod_levels([run_id], [H, R])["n"].sum())
    assert any_store.write_run(sid, data, ROLES).points == 0
    assert int(any_store.lod_levels([run_id], [H, R])["n"].sum()) == n_before
    _assert_fresh(any_store, run_id, H)


# ------------------------------------------------------------------------------------------ the dashboard's reads
def test_curves_read_the_coarsest_level_that_fills_the_budget_and_smooth_on_every_point(any_store):
    from dashboard.curves import choose_level
    from dashboard.data import build_curve
    from dashboard.smoothing import ema_debiased

    sid = any_store.source_id("file", "/logs")
    steps = np.arange(1, 20_001)
    h = _entropy(steps)
    h[[500, 15_000]] = [4.0, -2.0]  # a spike and a dip the chart must show
    run_id = any_store.write_run(sid, _run(steps, h, steps[::10], np.linspace(0.2, 0.8, 2_000)), ROLES).run_id
    levels = dict(zip(*[any_store.lod_levels([run_id], [H])[c] for c in ("level", "n")], strict=True))
    stored = any_store.points(run_id, H)
    for n_out, want in ((2_000, 1), (499, 2)):
        level = choose_level(levels, n_out)
        assert level == want
        c = build_curve(any_store, run_id, H, 0.0, "step", n_out, level)
        assert c.level == want and c.n_total == levels[want] and c.x.size <= n_out
        assert c.y.max() == 4.0 and c.y.min() == -2.0  # extremes survive the level and MinMaxLTTB
        np.testing.assert_array_equal(c.y, stored[np.searchsorted(stored[:, 0], c.step), 1])  # stored points
    # smoothing: the EMA runs on every stored point, whatever level was offered
    c = build_curve(any_store, run_id, H, 0.9, "step", 499, 2)
    assert c.level is None and c.n_total == 20_000
    full = ema_debiased(stored[:, 1], 0.9)
    np.testing.assert_allclose(c.smooth_y, full[np.searchsorted(stored[:, 0], c.smooth_step)], rtol=1e-12)
    assert c.smooth_y.max() == pytest.approx(full.max())
    # wall time from a level: hours since the first point
    w = build_curve(any_store, run_id, H, 0.0, "wall time", 499, 2)
    assert w.x_axis == "wall time" and w.x[-1] == pytest.approx(19_999 * 30 / 3600)


def test_without_levels_the_dashboard_reads_points_and_writes_nothing(any_store):
    from dashboard.data import build_bucket_series, build_curve

    sid = any_store.source_id("file", "/logs")
    steps = np.arange(1, 5_001)
    run_id = any_store.write_run(sid, _run(steps, _entropy(steps), steps[::10], np.linspace(0.2, 0.8, 500)),
                                 ROLES).run_id
    with any_store.engine.begin() as conn:  # a store written before levels existed
        conn.execute(text("DELETE FROM metric_lod"))
    c = build_curve(any_store, run_id, H, 0.0, "step", 499, 2)  # level 2 asked for, but there is none
    assert c.level is None and c.n_total == 5_000 and c.x.size <= 499
    s, v = build_bucket_series(any_store, run_id, H, 128, 2)
    assert s[0] == 1 and s[-1] == 5_000
    with any_store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM metric_lod")).scalar_one() == 0  # readers never write
