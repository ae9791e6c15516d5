"""Analyses of many runs at once give each run exactly what it gets alone: the batch's points read in one query
(``Store.points_of``) are ``Store.points``; the vectorised window medians and Theil–Sen give the numbers of
a median per point and of ``scipy.stats.theilslopes``, bit for bit (a window's trend asked for twice is
computed once, and the same), the reward's mean per evaluation interval that of a loop over the intervals — on the real verl runs of ../shared/data
and on tiny runs too short to fit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from analysis import batch, pipeline
from db import Store
from db.values import json_safe
from entropy_dash.cli import main
from models import collapse
from models.collapse import theil_sen, trend
from models.health import divergence
from models.health.series import Curve, window_median


@pytest.fixture(scope="module")
def real_store(shared_data, tmp_path_factory) -> Store:
    db = f"sqlite:///{tmp_path_factory.mktemp('batches') / 'store.db'}"
    assert main(["--db", db, "--quiet", "ingest", "tensorboard", "--no-analyse",
                 str(shared_data / "verl-tensorboard")]) == 0
    assert main(["--db", db, "--quiet", "ingest", "file", "--no-analyse", str(shared_data / "verl-console")]) == 0
    return Store.open(db, create=False)


@pytest.fixture(scope="module")
def short_store(tmp_path_factory) -> Store:
    """Runs of 1 or 2 steps (two keys): fewer evaluations than the law (3), the stages or the detectors need."""
    folder = tmp_path_factory.mktemp("short")
    lines = ["run,step,actor/entropy,critic/score/mean"]
    for r in range(8):
        lines += [f"short-{r},{s},{1.0 - 0.1 * s + 0.01 * r},{0.2 + 0.1 * s}" for s in range(1, r % 2 + 2)]
    (folder / "short.csv").write_text("\n".join(lines) + "\n")
    db = f"sqlite:///{folder / 'store.db'}"
    assert main(["--db", db, "--quiet", "ingest", "file", "--no-analyse", str(folder / "short.csv")]) == 0
    return Store.open(db, create=False)


def _canonical(results: list) -> dict[int, str]:
    """Each run's analysis as sorted JSON (a stored dict, or a RunAnalysis as it dumps itself)."""
    dicts = [r if isinstance(r, dict) else r.to_dict() for r in results]
    return {r["run_id"]: json.dumps(json_safe(r), sort_keys=True) for r in dicts}


def test_points_of_is_points_for_every_run_and_key(real_store):
    keys = real_store.run_keys()
    read = real_store.points_of(sorted(set(keys["run_id"])), sorted(set(keys["key"])) + ["no/such/key"])
    assert len(read) == len(keys) > 100  # every (run, key) with points, nothing else
    for run_id, key in zip(keys["run_id"], keys["key"], strict=True):
        one = real_store.points(int(run_id), key)
        assert read[(int(run_id), key)].shape == one.shape and read[(int(run_id), key)].tobytes() == one.tobytes()


@pytest.mark.parametrize("which", ["real_store", "short_store"])
def test_a_batch_read_in_chunks_gives_every_run_its_own_analysis(which, request, monkeypatch):
    store = request.getfixturevalue(which)
    ids = [int(i) for i in store.runs_frame()["id"]]
    alone = {}
    for i in ids:
        alone |= _canonical(pipeline.analyse_ids(store, [i]))
    monkeypatch.setattr(batch, "PREFETCH_RUNS", 3)  # several chunks, each read in one query
    together = _canonical(list(batch.analyse_batch(store, ids, pipeline.Options())))
    assert together == alone
    statuses = {json.loads(v)["status"] for v in together.values()}
    if which == "short_store":
        assert statuses == {"degenerate"} and all(json.loads(v)["law"] is None for v in together.values())
        assert all("too few evaluations" in json.loads(v)["reason"] for v in together.values())
    else:
        assert "ok" in statuses


def test_window_median_is_a_median_per_point():
    rng = np.random.default_rng(3)
    for n in [*range(0, 25), 301]:
        for x in (rng.standard_normal(n), np.round(rng.standard_normal(n), 1)):
            naive = np.array([np.median(np.delete(x[max(0, i - 5): i + 6], min(i, 5))) for i in range(1, n)])
            assert window_median(x, 5, 5, without_centre=True)[1:].tobytes() == naive.tobytes()
            naive = np.array([np.median(x[max(0, i - 2): i + 3]) for i in range(n)])
            assert window_median(x, 2, 2).tobytes() == naive.tobytes()


def test_theil_sen_is_scipys_on_real_curves_and_ties(real_store):
    keys = real_store.run_keys()
    curves = []
    for run_id, key in zip(keys["run_id"], keys["key"], strict=True):
        pts = real_store.points(int(run_id), key)
        ok = np.isfinite(pts[:, 1])
        if ok.sum() >= 2:
            curves.append((pts[ok, 0], pts[ok, 1]))
    rng = np.random.default_rng(4)
    curves += [(np.sort(rng.integers(0, 6, 12)).astype(float), np.round(rng.standard_normal(12), 1)),
               (np.arange(7.0), np.full(7, 0.5)), (np.array([1.0, 2.0, 4.0]), np.array([0.1, np.nan, 0.3]))]
    assert len(curves) > 100
    for x, y in curves:
        for confidence in (0.95, 0.9):
            ref = stats.theilslopes(y, x, alpha=confidence)
            got = theil_sen(x, y, confidence)
            assert np.array([ref[0], ref[2], ref[3]]).tobytes() == np.array(got, dtype=float).tobytes()


def test_the_trend_of_a_window_asked_twice_is_computed_once_and_the_same(monkeypatch):
    rng = np.random.default_rng(7)
    steps = np.arange(10, 1210, dtype=np.int64)  # int steps, as the detectors pass them
    values = 1.0 - 1e-4 * steps + 0.01 * rng.standard_normal(steps.size)
    calls = []
    monkeypatch.setattr(collapse, "theil_sen", lambda *a: calls.append(a) or theil_sen(*a))
    collapse._trend.cache_clear()
    first = trend(steps, values)
    again = trend(steps.astype(float), values.copy())  # equal numbers in other arrays: the kept answer
    other = trend(steps, values[::-1].copy())
    assert len(calls) == 2 and again == first and other != first
    ref = stats.theilslopes(values, steps, alpha=0.95)
    tau, p = stats.kendalltau(steps, values)
    assert (first.slope, *first.ci) == (ref[0], ref[2], ref[3]) and (first.tau, first.p) == (tau, p)
    assert (first.n, first.step_from, first.step_to) == (1200, 10.0, 1209.0)


def test_reward_means_per_evaluation_interval_are_the_loops():
    """The divergence detector's Spearman ρ reads the reward's mean over each evaluation's interval
    (previous evaluation, this one]: the same numbers as a loop over the intervals, with evaluations logged
    twice at one step (an empty interval) and reward steps before the first interval."""
    rng = np.random.default_rng(3)
    r_steps = np.arange(1, 400)
    reward = Curve.of("critic/score/mean", r_steps, rng.standard_normal(r_steps.size))
    b_steps = np.array([5, 7, 20, 20, 45, 100, 160, 161, 250, 399])
    bench = Curve.of("val/acc", b_steps, np.linspace(0.1, 0.5, b_steps.size) + 0.01 * rng.standard_normal(b_steps.size))
    edges = np.concatenate([[b_steps[0] - (b_steps[1] - b_steps[0])], b_steps])
    loop = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        ok = (r_steps > lo) & (r_steps <= hi)
        loop.append(float(np.mean(reward.values[ok])) if ok.any() else np.nan)
    loop = np.asarray(loop)
    assert (r_steps <= edges[0]).sum() == 3  # steps 1–3 come before the first interval (3, 5]
    assert np.isnan(loop[3]) and not np.isnan(loop[0])  # the second evaluation at step 20: nothing in between
    ok = np.isfinite(loop)
    ref = stats.spearmanr(loop[ok], bench.values[ok])
    assert divergence._spearman(reward, bench) == (float(ref.statistic), float(ref.pvalue))
