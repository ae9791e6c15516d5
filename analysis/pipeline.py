"""Per-run analyses over the store: who computes them, who stores them, who only reads them.

One ``analyses`` row per run (kind ``summary``) holds ``analysis.run.analyse_run``'s result as JSON plus its
key numbers as columns. A row is *stale* when the run's points changed since (``data_version``), when it was
made by another version of the analysis code (``ANALYSIS_VERSION``), or when it is missing.

* Writers — ``ingest``, ``schedule`` and ``entropy-dash analyse`` — call ``refresh_analyses``: stale rows are
  recomputed and saved.
* Readers — ``runs``, ``fit``, ``backtest``, ``report`` and every dashboard page — call ``current_results``:
  fresh rows are read, stale ones are recomputed in memory and *not* saved, so reads work under a database
  role that may only SELECT and an upgrade never shows old numbers next to new ones.

Results across runs — the replay's summary per fraction, every run's replay rows (finished runs) or live
headline (runs in progress), the cross-run model and the headline weights behind them — are computed by the
writers too, right after the per-run rows (``refresh_cross_run``): the per-run replay is incremental (only runs
whose points changed are replayed again), the cross-run step is redone over the stored rows. They are stored
with the analysis version and a fingerprint of the per-run rows they came from (``cross_run`` table, and one
``analyses`` row of kind ``forecast`` per run); ``current_cross_run`` reads them as stored, and computes them in
memory (never saved) only when the store is not current (a stale run, another version, a store written before
this version).

Many runs are analysed in parallel processes (at most one per core) when there are enough of them for the
start-up of a process to pay off. A run whose analysis fails is not lost: it gets status ``failed`` and the
reason, and every other run is analysed as usual.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis.keys import KeyChoice, choose_keys
from analysis.results import RunAnalysis
from analysis.settings import RunSettings, run_settings
from analysis.version import ANALYSIS_VERSION, CROSS_RUN_KIND, FORECAST_KIND, KIND, SCHEMA_VERSION, versioned
from db import Store

if TYPE_CHECKING:
    from analysis.health import PointReader
from db.claims import claimed_batches
from db.locks import cross_run_lock, shared

log = logging.getLogger(__name__)

#: below this many runs to analyse, one process does it (starting workers costs about a second)
PARALLEL_MIN_RUNS = 24
#: what computing an analysis imports (a worker gets them from the process that starts it)
COMPUTE_MODULES = ("analysis.run", "analysis.health")
#: runs per claimed batch on PostgreSQL (``db.claims``): a quarter of the work, within these bounds
CLAIM_MIN, CLAIM_MAX = 8, 200


@dataclass(frozen=True)
class Options:
    """Read-time choices of a command (``fit --keep-warmup``); any of them makes every analysis in-memory."""

    keep_warmup: bool = False

    @property
    def default(self) -> bool:
        return not self.keep_warmup


# --- reading -------------------------------------------------------------------------------------------------


def current_results(store: Store, run_ids: Sequence[int] | None = None,
                    options: Options = Options()) -> list[dict[str, Any]]:
    """The analysis of every run (or of ``run_ids``), in run order: stored when fresh, else computed in memory
    (never written). With non-default ``options`` every run is computed in memory with them."""
    runs = store.runs_frame(run_ids)
    if runs.empty:
        return []
    ids = [int(i) for i in runs["id"]]
    if not options.default:
        return analyse_ids(store, ids, options)
    stored = _stored(store, ids)
    stale = set(store.stale_runs(KIND, ANALYSIS_VERSION)) & set(ids)
    fresh_ids = [i for i in ids if i not in stale and i in stored]
    computed = {r["run_id"]: r for r in analyse_ids(store, [i for i in ids if i not in fresh_ids], options)}
    return [stored[i] if i in fresh_ids else computed[i] for i in ids]


def _stored(store: Store, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The stored analyses of ``ids``, each loaded through ``RunAnalysis.from_dict`` (a row that does not load
    is an error naming the run and the key it lacks). The readers still take the dict: the stored one is
    returned, which is what ``to_dict()`` gives back (tests/test_results.py) without paying to rebuild it."""
    df = store.analyses_frame(KIND, ids)
    out: dict[int, dict[str, Any]] = {}
    for i, r in zip(df["run_id"], df["result"], strict=True):
        RunAnalysis.from_dict(r)
        out[int(i)] = dict(r)
    return out


def run_series(store: Store, result: Mapping[str, Any]) -> tuple[pd.Series, pd.Series]:
    """The chosen entropy and headline performance series of an analysed run (finite points only)."""
    return (_finite(store, result["run_id"], result["entropy_key"]),
            _finite(store, result["run_id"], result["performance_key"]))


def _finite(store: PointReader, run_id: int, key: str | None) -> pd.Series:
    if key is None:
        return pd.Series(dtype=float)
    pts = store.points(int(run_id), key)
    ok = np.isfinite(pts[:, 1])
    return pd.Series(pts[ok, 1], index=pts[ok, 0].astype(np.int64), name=key)


# --- writing -------------------------------------------------------------------------------------------------


def refresh_analyses(store: Store, run_ids: Sequence[int] | None = None, *, force: bool = False) -> int:
    """Recompute and save the analyses of stale runs (of ``run_ids`` when given; every one of them when
    ``force``); returns how many were saved."""
    if force:
        todo = [int(i) for i in (run_ids if run_ids is not None else store.runs_frame()["id"])]
    else:
        stale = store.stale_runs(KIND, ANALYSIS_VERSION)
        wanted = None if run_ids is None else {int(j) for j in run_ids}  # one set, not one per stale run
        todo = stale if wanted is None else [i for i in stale if i in wanted]
    if todo and shared(store.engine):
        done = _refresh_claimed(store, todo, force=force)
    elif todo:
        versions = store.runs_frame(todo).set_index("id")["data_version"].to_dict()
        results = analyse_ids(store, todo)
        store.save_analyses([(r["run_id"], KIND, int(versions[r["run_id"]]), r, columns(r)) for r in results])
        done = len(todo)
    else:
        done = 0
    if todo or not cross_run_is_current(store):
        with cross_run_lock(store.engine):
            if done or not cross_run_is_current(store):  # another process may have just brought it up to date
                refresh_cross_run(store)
    return done


def _refresh_claimed(store: Store, todo: Sequence[int], *, force: bool) -> int:
    """PostgreSQL, where several processes may analyse at once: the runs are claimed batch by batch
    (``db.claims``) and each is analysed by the process that claimed it; returns how many this one did."""
    done = 0
    size = max(CLAIM_MIN, min(len(todo) // 4, CLAIM_MAX))  # a few batches: the work splits, each runs in parallel
    for batch in claimed_batches(store.engine, todo, kind=KIND, analysis_version=ANALYSIS_VERSION, force=force,
                                 size=size):
        results = analyse_ids(store, [i for i, _ in batch])
        versions = dict(batch)  # read under the claim: no sync can change them before the commit
        store.save_analyses([(r["run_id"], KIND, versions[r["run_id"]], r, columns(r)) for r in results])
        log.debug("claimed and analysed runs %s (data versions %s)", ",".join(str(i) for i, _ in batch),
                  ",".join(str(v) for _, v in batch))
        done += len(results)
    return done


def cross_run_is_current(store: Store) -> bool:
    """Whether the stored cross-run results were computed, by this version, from the per-run rows as they are."""
    doc = store.cross_run(CROSS_RUN_KIND)
    return (doc is not None and doc[0] == ANALYSIS_VERSION and doc[1] == store.analyses_fingerprint(KIND)
            and not store.stale_runs(KIND, ANALYSIS_VERSION))


def refresh_cross_run(store: Store) -> None:
    """Recompute and save the results across runs from the stored per-run rows (module docstring)."""
    from analysis.forecasting import cross_run

    inputs = store.analyses_fingerprint(KIND)
    results = current_results(store)
    cr = cross_run(results)
    versions = store.runs_frame().set_index("id")["data_version"].to_dict()
    store.save_analyses([(rid, FORECAST_KIND, int(versions[rid]), versioned(row), _forecast_columns(row))
                         for rid, row in cr.rows.items() if rid in versions])
    store.save_cross_run(CROSS_RUN_KIND, ANALYSIS_VERSION, inputs, versioned({"track": cr.track}))


def _forecast_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    live = row.get("live") or {}
    iv = live.get("interval") or [None, None]
    return {"analysis_version": ANALYSIS_VERSION, "forecast_final": live.get("predicted_final"),
            "forecast_lo": iv[0], "forecast_hi": iv[1]}


def current_cross_run(store: Store, run_ids: Sequence[int] | None = None,
                      results: Sequence[Mapping[str, Any]] | None = None):  # noqa: ANN201 - forecasting.CrossRun
    """The results across runs for ``run_ids`` (every run when None): as stored when the store is current,
    else computed in memory from ``results`` (every run's, read when not given) and not saved."""
    from analysis.forecasting import CrossRun, cross_run

    if cross_run_is_current(store):
        doc = store.cross_run(CROSS_RUN_KIND)
        df = store.analyses_frame(FORECAST_KIND, run_ids)
        rows = {int(i): dict(r) for i, r in zip(df["run_id"], df["result"], strict=True)} if not df.empty else {}
        return CrossRun(rows, dict(doc[2].get("track") or {}), stored=True)
    everyone = results if results is not None and run_ids is None else current_results(store)
    return cross_run(everyone)


def columns(result: Mapping[str, Any]) -> dict[str, Any]:
    """The key numbers of a result, as the ``analyses`` table's columns."""
    law = result.get("law") or {}
    return {
        "a": law.get("a"), "b": law.get("b"), "ceiling": law.get("ceiling"), "ceiling_lo": law.get("ceiling_lo"),
        "ceiling_hi": law.get("ceiling_hi"), "ceiling_raw": law.get("ceiling_raw"), "r2": law.get("r2"),
        "n": law.get("n"), "plateau_step": (result.get("stage") or {}).get("step"),
        "collapse_step": (result.get("collapse") or {}).get("projected_floor_step"),
        "analysis_version": ANALYSIS_VERSION, "status": result.get("status"),
    }


# --- computing -----------------------------------------------------------------------------------------------


def analyse_ids(store: Store, run_ids: Sequence[int], options: Options = Options()) -> list[dict[str, Any]]:
    """Analyse these runs (nothing is written), in parallel processes when there are many."""
    ids = [int(i) for i in run_ids]
    if not ids:
        return []
    workers = min(os.cpu_count() or 1, len(ids) // (PARALLEL_MIN_RUNS // 2))
    if len(ids) < PARALLEL_MIN_RUNS or workers < 2:
        return list(_analyse(store, ids, options))
    url = store.engine.url.render_as_string(hide_password=False)
    chunks = [ids[i::workers] for i in range(workers)]
    # fork is cheap but unsafe in a process with other threads (the scheduler, the dashboard's server)
    forked = threading.active_count() == 1
    context = multiprocessing.get_context("fork" if forked else "forkserver")
    # the models (scipy.stats alone takes a second or two) imported once, before the workers start, not in each
    if forked:
        import analysis.health
        import analysis.run  # noqa: F401
    else:
        context.set_forkserver_preload(list(COMPUTE_MODULES))
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=end_with_parent,
                             initargs=(os.getpid(),)) as pool:
        parts = list(pool.map(_worker, [url] * workers, chunks, [options] * workers))
    by_id = {r["run_id"]: r for part in parts for r in part}
    return [by_id[i] for i in ids]


def end_with_parent(parent_pid: int, poll: float = 1.0) -> None:
    """A worker's initializer: the worker ends when the process that started the pool does, SIGKILL included
    (so no worker outlives an ingest, holding the store open). On Linux the kernel sends SIGKILL when the
    parent dies (``prctl(PR_SET_PDEATHSIG)``; with forkserver the parent is the fork server, which ends with
    the pool's owner); everywhere a watchdog thread checks every ``poll`` seconds that ``parent_pid`` lives."""
    import signal
    import sys
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # the watchdog below still ends the worker
    ppid = os.getppid()  # the pool's owner (fork) or the fork server
    if not _alive(parent_pid):  # it died before the prctl took effect
        os._exit(1)

    def watch() -> None:
        while _alive(parent_pid) and os.getppid() == ppid:
            time.sleep(poll)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _worker(url: str, ids: list[int], options: Options) -> list[dict[str, Any]]:
    from db import make_engine

    store = Store(make_engine(url))  # the pool's owner opened it (and checked its schema) already
    try:
        return list(_analyse(store, ids, options))
    finally:
        store.engine.dispose()


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


def _analyse(store: Store, ids: list[int], options: Options) -> Iterator[dict[str, Any]]:
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
    series = {k: _finite(points, run["id"], k) for k in wanted}
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
