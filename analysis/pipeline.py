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
start-up of a process to pay off; each process analyses its runs as a batch (``analysis.batch``: their points
read a chunk of runs per query). A run whose analysis fails is not lost: it gets status ``failed`` and the
reason, and every other run is analysed as usual.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import import_module
from typing import Any

import pandas as pd

from analysis.batch import analyse_batch, finite_series
from analysis.results import RunAnalysis
from analysis.version import (
    ANALYSIS_VERSION,
    CROSS_RUN_KIND,
    CROSS_RUN_VERSION,
    FORECAST_KIND,
    HEALTH_KIND,
    KIND,
    versioned,
)
from db import Store
from db.claims import claimed_batches
from db.locks import cross_run_lock, shared
from models.health import RANK

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
    return (finite_series(store, result.run_id, result.entropy_key),
            finite_series(store, result.run_id, result.performance_key))


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
    """Whether the stored cross-run results were computed, by these versions (``ANALYSIS_VERSION``,
    ``CROSS_RUN_VERSION``), from the per-run rows as they are."""
    doc = store.cross_run(CROSS_RUN_KIND)
    return (doc is not None and doc[0] == ANALYSIS_VERSION and doc[2].get("cross_run_version") == CROSS_RUN_VERSION
            and doc[1] == store.analyses_fingerprint(KIND) and not store.stale_runs(KIND, ANALYSIS_VERSION))


def refresh_cross_run(store: Store) -> None:
    """Recompute and save the results across runs from the stored per-run rows (module docstring): per run its
    forecast row and its health findings in context (``HEALTH_KIND``, with the worst severity per detector as
    the ``health`` column, what the Health page's grid reads)."""
    from analysis.forecasting import cross_run
    from analysis.health import health_payload

    inputs = store.analyses_fingerprint(KIND)
    results = current_results(store)
    cr = cross_run(results)
    versions = store.runs_frame().set_index("id")["data_version"].to_dict()
    store.save_analyses([(rid, FORECAST_KIND, int(versions[rid]), versioned(row), _forecast_columns(row))
                         for rid, row in cr.rows.items() if rid in versions])
    health = [h for h in health_payload(results, results, cr.live()) if int(h["run_id"]) in versions]
    store.save_analyses([(int(h["run_id"]), HEALTH_KIND, int(versions[int(h["run_id"])]), versioned(h),
                          {"analysis_version": ANALYSIS_VERSION, "health": health_grid_row(h["findings"])})
                         for h in health])
    store.save_cross_run(CROSS_RUN_KIND, ANALYSIS_VERSION, inputs,
                         versioned({"track": cr.track, "cross_run_version": CROSS_RUN_VERSION}))


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


def current_health(store: Store, chosen: Sequence[RunAnalysis], results: Sequence[RunAnalysis] | None = None,
                   cross=None) -> list[dict[str, Any]]:  # noqa: ANN001 - forecasting.CrossRun
    """``analysis.health.health_payload`` of the runs ``chosen`` (in that order): as stored when the store is
    current (their rows only), else computed in memory among ``results`` (every run's, read when not given)
    with the live forecasts of ``cross`` (read when not given)."""
    ids = [int(r.run_id) for r in chosen]
    if not ids:
        return []
    if cross_run_is_current(store):
        df = store.analyses_frame(HEALTH_KIND, ids)
        stored = {int(i): r for i, r in zip(df["run_id"], df["result"], strict=True)}
        if all(i in stored for i in ids):
            return [{k: v for k, v in stored[i].items() if k != "schema_version"} for i in ids]
    from analysis.health import health_payload  # the detectors' context: only when not stored

    everyone = results if results is not None else current_results(store)
    live = (cross if cross is not None else current_cross_run(store, ids, everyone)).live()
    return health_payload(everyone, chosen, live)


def current_health_grid(store: Store) -> dict[int, dict[str, str]]:
    """Run id → the worst severity of each detector's findings (``health_grid_row``), for every run that has
    findings: the stored ``health`` column when the store is current (no run's document is read), else
    computed in memory."""
    if cross_run_is_current(store):
        df = store.analyses_columns(HEALTH_KIND, ["health"])
        return {int(i): dict(g) for i, g in zip(df["run_id"], df["health"], strict=True) if g}
    results = current_results(store)
    grid = {int(h["run_id"]): health_grid_row(h["findings"]) for h in current_health(store, results, results)}
    return {i: g for i, g in grid.items() if g}


def health_grid_row(findings: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Detector → the worst severity of its findings (a detector may have one per benchmark)."""
    row: dict[str, str] = {}
    for f in findings:
        d, sev = f["detector"], f["severity"]
        if d not in row or RANK[sev] > RANK[row[d]]:
            row[d] = sev
    return row


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
        return list(analyse_batch(store, ids, options))
    url = store.engine.url.render_as_string(hide_password=False)
    chunks = [ids[i::workers] for i in range(workers)]
    # fork is cheap but unsafe in a process with other threads (the scheduler, the dashboard's server)
    forked = threading.active_count() == 1
    context = multiprocessing.get_context("fork" if forked else "forkserver")
    # the models (scipy.stats alone takes a second or two) imported once, before the workers start, not in each
    if forked:
        for module in COMPUTE_MODULES:
            import_module(module)
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
        return list(analyse_batch(store, ids, options))
    finally:
        store.engine.dispose()
