"""Analysing a batch of runs in one process (``analysis.pipeline`` decides which runs and which processes):
what each run's analysis reads is planned first (``_Plan``: its settings, key choice and the keys whose
points it reads), then the points of a chunk of runs are read in one query (``Store.points_of``: at most
``PREFETCH_RUNS`` runs and about ``PREFETCH_POINTS`` points at a time), then each run is analysed
(``analysis.run.analyse_run`` and its health, ``analysis.health.run_health``). A run whose analysis fails
gets status ``failed`` and the reason; every other run is analysed as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis.keys import KeyChoice, choose_keys
from analysis.settings import RunSettings, run_settings
from analysis.version import ANALYSIS_VERSION, SCHEMA_VERSION
from db import Store

if TYPE_CHECKING:
    from analysis.health import PointReader
    from analysis.pipeline import Options

log = logging.getLogger(__name__)


#: points read ahead in one query: at most this many runs, and about this many points
PREFETCH_RUNS, PREFETCH_POINTS = 500, 1_000_000


@dataclass(frozen=True)
class _Plan:
    """What one run's analysis reads, decided before any of its points are read."""

    run: dict[str, Any]
    stats: list[dict[str, Any]]  # the run's rows of ``Store.run_keys``
    settings: RunSettings
    choice: KeyChoice
    roles: dict[str, str | None]  # its keys with points → role
    reads: frozenset[str]  # the keys whose points the analysis reads
    n_points: int


class _Points:
    """``Store.points`` of the runs of one chunk, read in one query (a key not read ahead is read on demand)."""

    def __init__(self, store: Store, plans: Sequence[_Plan]) -> None:
        self._store = store
        self._read = store.points_of([p.run["id"] for p in plans], sorted({k for p in plans for k in p.reads}))
        self._wanted = {(int(p.run["id"]), k) for p in plans for k in p.reads}

    def points(self, run_id: int, key: str) -> np.ndarray:
        got = self._read.get((int(run_id), key))
        if got is not None:
            return got
        if (int(run_id), key) in self._wanted:  # read ahead, and it has no points
            return np.empty((0, 3))
        return self._store.points(run_id, key)


def analyse_batch(store: Store, ids: list[int], options: Options) -> Iterator[dict[str, Any]]:
    runs = {int(r["id"]): r for r in store.runs_frame(ids).to_dict("records")}
    sources = store.sources_frame().set_index("id")["options"].to_dict()
    roles = store.key_roles()
    by_run: dict[int, list[dict[str, Any]]] = {}
    for row in store.run_keys(ids).to_dict("records"):  # each run's rows in one pass
        by_run.setdefault(int(row["run_id"]), []).append(row)
    chunk: list[_Plan | dict[str, Any]] = []
    n_points = 0
    for run_id in ids:
        run = runs[run_id]
        try:
            plan: _Plan | dict[str, Any] = _plan(run, by_run.get(run_id, []), roles,
                                                 sources.get(run["source_id"]) or {}, options)
        except Exception as exc:  # noqa: BLE001 - one run's failure is that run's status, never everyone's
            plan = _failed(run, exc)
        chunk.append(plan)
        n_points += plan.n_points if isinstance(plan, _Plan) else 0
        if len(chunk) >= PREFETCH_RUNS or n_points >= PREFETCH_POINTS:
            yield from _analyse_chunk(store, chunk)
            chunk, n_points = [], 0
    yield from _analyse_chunk(store, chunk)


def _analyse_chunk(store: Store, chunk: Sequence[_Plan | dict[str, Any]]) -> Iterator[dict[str, Any]]:
    plans = [p for p in chunk if isinstance(p, _Plan)]
    points = _Points(store, plans) if plans else None
    for plan in chunk:
        if not isinstance(plan, _Plan):
            yield plan  # its planning failed
            continue
        try:
            yield _analyse_one(points, plan)
        except Exception as exc:  # noqa: BLE001 - one run's failure is that run's status, never everyone's
            yield _failed(plan.run, exc)


def _failed(run: Mapping[str, Any], exc: Exception) -> dict[str, Any]:
    log.warning("run %s (%s): analysis failed: %s: %s", run["id"], run["name"], type(exc).__name__, exc)
    return {"run_id": int(run["id"]), "run": run["name"], "analysis_version": ANALYSIS_VERSION,
            "schema_version": SCHEMA_VERSION,
            "status": "failed", "reason": f"analysis failed: {type(exc).__name__}: {str(exc)[:300]}",
            "law": None, "entropy_key": None, "performance_key": None, "benchmarks": [],
            "backtests": {}, "live": None, "progress": "", "finished": False, "unrecognised_keys": [],
            "n_entropy": 0, "n_performance": 0, "n_entropy_nonfinite": 0, "n_performance_nonfinite": 0,
            "last_step": None, "key_reason": None, "performance_kind": None}


def _plan(run: dict[str, Any], stats: list[dict[str, Any]], roles: Mapping[str, str],
          source_options: Mapping[str, Any], options: Options) -> _Plan:
    from analysis.health import keys_read

    settings = run_settings(source_options, run["name"], keep_warmup=options.keep_warmup)
    with_points = {s["key"] for s in stats}
    seen = list(dict.fromkeys([*(run.get("keys_seen") or []), *(s["key"] for s in stats)]))
    run_roles = {k: roles.get(k) for k in seen} | {s["key"]: s["role"] for s in stats}
    choice = choose_keys(seen, run_roles, params=run.get("params"), entropy_key=settings.entropy_key,
                         performance_key=settings.performance_key)
    health_roles = {k: r for k, r in run_roles.items() if k in with_points}
    reads = ({k for k in (choice.entropy, *choice.benchmarks) if k} | keys_read(health_roles)) & with_points
    return _Plan(run, stats, settings, choice, health_roles, frozenset(reads),
                 sum(int(s["n"]) for s in stats if s["key"] in reads))


def _analyse_one(points: _Points, plan: _Plan) -> dict[str, Any]:
    from analysis.run import analyse_run  # the models (and scipy) are imported only to compute

    run, choice = plan.run, plan.choice
    wanted = [k for k in (choice.entropy, *choice.benchmarks) if k and k in plan.roles]
    series = {k: finite_series(points, run["id"], k) for k in wanted}
    result = analyse_run(run, plan.stats, choice, series, plan.settings)
    result.update(_health(points, run, plan.roles, result))
    return result


def _health(store: PointReader, run: dict[str, Any], roles: Mapping[str, str | None],
            result: Mapping[str, Any]) -> dict[str, Any]:
    """The run's health findings (``analysis.health``); a failure there is said, never the run's failure."""
    from analysis.health import run_health

    try:
        return run_health(store, run, roles, result)
    except Exception as exc:  # noqa: BLE001 - health is one part of the analysis: contained like the others
        log.warning("run %s (%s): health detectors failed: %s: %s", run["id"], run["name"], type(exc).__name__, exc)
        return {"health": [], "health_error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def finite_series(store: PointReader, run_id: int, key: str | None) -> pd.Series:
    if key is None:
        return pd.Series(dtype=float)
    pts = store.points(int(run_id), key)
    ok = np.isfinite(pts[:, 1])
    return pd.Series(pts[ok, 1], index=pts[ok, 0].astype(np.int64), name=key)
