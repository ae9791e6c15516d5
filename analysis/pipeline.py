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
from typing import Any

import numpy as np
import pandas as pd

from analysis.keys import choose_keys
from analysis.results import RunAnalysis
from analysis.settings import RunSettings, run_settings
from analysis.version import ANALYSIS_VERSION, CROSS_RUN_KIND, FORECAST_KIND, KIND, SCHEMA_VERSION, versioned
from db import Store
from db.claims import claimed_batches
from db.locks import cross_run_lock, shared

log = logging.getLogger(__name__)

#: below this many runs to analyse, one process does it (starting workers costs about a second)
PARALLEL_MIN_RUNS = 24
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
                    options: Options = Options()) -> list[RunAnalysis]:
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
    computed = {r.run_id: r for r in analyse_ids(store, [i for i in ids if i not in fresh_ids], options)}
    return [stored[i] if i in fresh_ids else computed[i] for i in ids]


def _stored(store: Store, ids: Sequence[int]) -> dict[int, RunAnalysis]:
    """The stored analyses of ``ids``, each loaded through ``RunAnalysis.from_dict`` (a row that does not load
    is an error naming the run and the key it lacks)."""
    df = store.analyses_frame(KIND, ids)
    return {int(i): RunAnalysis.from_dict(r) for i, r in zip(df["run_id"], df["result"], strict=True)}


def run_series(store: Store, result: RunAnalysis) -> tuple[pd.Series, pd.Series]:
    """The chosen entropy and headline performance series of an analysed run (finite points only)."""
    return (_finite(store, result.run_id, result.entropy_key),
            _finite(store, result.run_id, result.performance_key))


def _finite(store: Store, run_id: int, key: str | None) -> pd.Series:
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
        results = _analysed(store, todo)
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
        results = _analysed(store, [i for i, _ in batch])
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
                      results: Sequence[RunAnalysis] | None = None):  # noqa: ANN201 - forecasting.CrossRun
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
    """The key numbers of a result (the dict about to be stored), as the ``analyses`` table's columns."""
    law = result.get("law") or {}
    return {
        "a": law.get("a"), "b": law.get("b"), "ceiling": law.get("ceiling"), "ceiling_lo": law.get("ceiling_lo"),
        "ceiling_hi": law.get("ceiling_hi"), "ceiling_raw": law.get("ceiling_raw"), "r2": law.get("r2"),
        "n": law.get("n"), "plateau_step": (result.get("stage") or {}).get("step"),
        "collapse_step": (result.get("collapse") or {}).get("projected_floor_step"),
        "analysis_version": ANALYSIS_VERSION, "status": result.get("status"),
    }


# --- computing -----------------------------------------------------------------------------------------------


def analyse_ids(store: Store, run_ids: Sequence[int], options: Options = Options()) -> list[RunAnalysis]:
    """Analyse these runs (nothing is written), in parallel processes when there are many."""
    return [RunAnalysis.from_dict(r) for r in _analysed(store, run_ids, options)]


def _analysed(store: Store, run_ids: Sequence[int], options: Options = Options()) -> list[dict[str, Any]]:
    """``analyse_ids`` as the dicts the writers store (``RunAnalysis.to_dict`` of what readers get)."""
    ids = [int(i) for i in run_ids]
    if not ids:
        return []
    workers = min(os.cpu_count() or 1, len(ids) // (PARALLEL_MIN_RUNS // 2))
    if len(ids) < PARALLEL_MIN_RUNS or workers < 2:
        return list(_analyse(store, ids, options))
    url = store.engine.url.render_as_string(hide_password=False)
    chunks = [ids[i::workers] for i in range(workers)]
    # fork is cheap but unsafe in a process with other threads (the scheduler, the dashboard's server)
    context = multiprocessing.get_context("fork" if threading.active_count() == 1 else "forkserver")
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
    store = Store.open(url, create=False)
    try:
        return list(_analyse(store, ids, options))
    finally:
        store.engine.dispose()


def _analyse(store: Store, ids: list[int], options: Options) -> Iterator[dict[str, Any]]:
    runs = store.runs_frame(ids).set_index("id", drop=False)
    sources = store.sources_frame().set_index("id")
    stats = store.run_keys(ids)
    roles = store.key_roles()
    # each run's rows in one pass (a mask per run grew with runs × rows)
    by_run = {int(i): g for i, g in stats.groupby("run_id", sort=False)} if not stats.empty else {}
    for run_id in ids:
        run = runs.loc[run_id].to_dict()
        try:
            yield _analyse_one(store, run, by_run.get(int(run_id), stats.iloc[:0]), roles,
                               sources.loc[run["source_id"], "options"] or {}, options)
        except Exception as exc:  # noqa: BLE001 - one run's failure is that run's status, never everyone's
            log.warning("run %s (%s): analysis failed: %s: %s", run_id, run["name"], type(exc).__name__, exc)
            yield {"run_id": int(run_id), "run": run["name"], "analysis_version": ANALYSIS_VERSION,
                   "schema_version": SCHEMA_VERSION,
                   "status": "failed", "reason": f"analysis failed: {type(exc).__name__}: {str(exc)[:300]}",
                   "law": None, "entropy_key": None, "performance_key": None, "benchmarks": [],
                   "backtests": {}, "live": None, "progress": "", "finished": False, "unrecognised_keys": [],
                   "n_entropy": 0, "n_performance": 0, "n_entropy_nonfinite": 0, "n_performance_nonfinite": 0,
                   "last_step": None, "key_reason": None, "performance_kind": None}


def _analyse_one(store: Store, run: dict[str, Any], stats: pd.DataFrame, roles: Mapping[str, str],
                 source_options: Mapping[str, Any], options: Options) -> dict[str, Any]:
    from analysis.run import analyse_run  # the models (and scipy) are imported only to compute

    settings: RunSettings = run_settings(source_options, run["name"], keep_warmup=options.keep_warmup)
    with_points = set(stats["key"]) if not stats.empty else set()
    seen = list(dict.fromkeys([*(run.get("keys_seen") or []), *with_points]))
    run_roles = {k: roles.get(k) for k in seen} | {k: r for k, r in zip(stats.get("key", []), stats.get("role", []),
                                                                          strict=True)}
    choice = choose_keys(seen, run_roles, params=run.get("params"), entropy_key=settings.entropy_key,
                         performance_key=settings.performance_key)
    wanted = [k for k in (choice.entropy, *choice.benchmarks) if k and k in with_points]
    series = {k: _finite(store, run["id"], k) for k in wanted}
    result = analyse_run(run, stats, choice, series, settings)
    result.update(_health(store, run, {k: r for k, r in run_roles.items() if k in with_points}, result))
    return result


def _health(store: Store, run: dict[str, Any], roles: Mapping[str, str | None],
            result: Mapping[str, Any]) -> dict[str, Any]:
    """The run's health findings (``analysis.health``); a failure there is said, never the run's failure."""
    from analysis.health import run_health

    try:
        return run_health(store, run, roles, result)
    except Exception as exc:  # noqa: BLE001 - health is one part of the analysis: contained like the others
        log.warning("run %s (%s): health detectors failed: %s: %s", run["id"], run["name"], type(exc).__name__, exc)
        return {"health": [], "health_error": f"{type(exc).__name__}: {str(exc)[:300]}"}
