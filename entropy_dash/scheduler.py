"""`entropy-dash schedule --config sources.toml`: ingest every configured source on its own interval or
cron trigger, refresh the analyses of the runs that changed, and optionally write a report, until stopped.

The config file (TOML)::

    db = "sqlite:///entropy-dash.db"        # optional; --db and $ENTROPY_DASH_DB win

    [[source]]
    kind = "mlflow"                          # a kind of the source registry (`entropy-dash ingest --help`)
    uri = "http://127.0.0.1:5000"            # server URL, ENTITY/PROJECT (wandb) or a path (the others)
    experiments = ["grpo-sweep"]             # mlflow only; default: every experiment
    every = "5m"                             # interval: a number of seconds, or 30s, 5m, 1h, 1d …
    # cron = "*/10 * * * *"                  # … or a crontab line (minute hour day month weekday)
    roles = { "my/entropy" = "entropy" }     # per-source key-role overrides
    performance_key = "val-core/gsm8k/acc/mean_at_1"   # optional per-source choice (also entropy_key)
    planned_steps = 1200                     # optional: the runs' planned length, where the source lacks it
    # keep_warmup = true                     # optional: fit every evaluation (no warm-up detection)
    # warmup_steps = 10                      # optional: the evaluations at or before step 10 are the warm-up
    # performance_range = [-1.0, 1.0]        # optional: the metric's range (accuracies are [0, 1] anyway)
    # finished = true                        # optional: the runs finished (for sources that do not say so)
    [source.runs."run-name"]                 # optional per-run settings (any of the seven above)
    performance_key = "val/test_score/gsm8k"
    warmup_steps = 20

    [[source]]
    kind = "file"
    uri = "logs/"                            # relative paths are relative to this file's folder
    cron = "0 * * * *"

    [report]                                 # optional: a report after every sync that changed something
    out = "reports"                          # one time-stamped folder per report inside
    formats = ["html", "md", "json"]
    keep = 10                                # older report folders are deleted

Reports are written by ``reports.writer.write_scheduled_report`` (time-stamped folders, the last ``keep``
kept), only when something changed since the last one.

Other per-source keys are the options each kind declares in the source registry (``ingest.registry``;
e.g. ``keys`` and ``all_keys`` for mlflow, ``verl_step_offset`` for file). A relative ``sqlite:///`` path in ``db`` is relative to the config file too.
Unknown keys, bad values and missing ones are a ``ConfigError`` naming the file, the source and the key.

Each job is ``entropy_dash.sync_workflow.sync_and_analyse``, as for ``entropy-dash ingest``: the sync (one
transaction per run, a ``sync_log`` row per job, retries on connection errors), then the analyses of the
source's runs left stale. Sources are built by the source registry (``ingest.registry``). Jobs run one at a time in a
worker thread; a job whose previous run is still going is skipped, never stacked. SIGTERM or SIGINT stops
the scheduler: the current job ends after the run it is writing (every run is its own transaction, so
nothing partial is left; the job's ``sync_log`` row says it was stopped and the next sync resumes from the
watermarks) and the process exits 0. Several schedulers may share one PostgreSQL store: each source is
synced by one of them per trigger and the analyses are split between them (``db.locks``, ``db.claims``).
``--once`` runs every source once, in order, and exits: 0 when all succeeded, 1 when any failed (its error is in ``sync_log``) — for system cron and for tests.
"""


from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from analysis.version import ANALYSIS_VERSION, KIND
from db import Store
from db.locks import shared, source_lock, source_row_id, synced_since
from entropy_dash.errors import USER_ERRORS
from entropy_dash.schedule_config import (  # noqa: F401 - the config's API, used through this module too
    ReportConfig,
    ScheduleConfig,
    SourceConfig,
    cron_trigger,
    load_config,
    parse_interval,
)
from entropy_dash.sync_workflow import sync_and_analyse
from entropy_dash.trigger_time import trigger_since
from ingest import registry
from ingest.errors import IngestError

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- jobs
class SyncStopped(IngestError):
    """The scheduler was asked to stop while a sync was running; the runs written so far are complete."""


@dataclass
class Scheduler:
    """Runs the configured jobs against one store; ``stop`` (set by SIGTERM/SIGINT) ends them early."""

    config: ScheduleConfig
    store: Any  # db.Store
    stop: threading.Event = field(default_factory=threading.Event)
    failures: int = 0
    _dirty: bool = False  # data changed since the last report
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run_source(self, src: SourceConfig, since: datetime | None = None) -> bool:
        """One sync of ``src`` + analyses (+ report); False when it failed (the error is in sync_log). On
        PostgreSQL the source is left to another scheduler that holds its lock or synced it ``since`` (this
        trigger's fire time); this one then helps with the analyses of its runs (``db.locks``, ``db.claims``)."""
        if self.stop.is_set():
            return True
        with self._lock:
            try:
                source = registry.build(src.kind, src.uri, src.options)
                with source_lock(self.store.engine, source.kind, source.uri) as held:
                    if not held or (since is not None and shared(self.store.engine) and synced_since(
                            self.store.engine, source.kind, source.uri, since, host=socket.gethostname(),
                            pid=os.getpid())):
                        log.info("%s: synced by another scheduler (%s); skipped here", src.label,
                                 "it holds the source's lock" if not held else "since this trigger fired")
                        self._help_analyse(src, source)
                        return True
                    summary = sync_and_analyse(self.store, source, progress=self._progress,
                                               stopped=self.stop.is_set)
            except SyncStopped as exc:
                log.warning("%s: %s", src.label, exc)
                return True
            except USER_ERRORS as exc:
                self.failures += 1
                log.error("%s: sync failed: %s", src.label, exc)
                return False
            result = summary.result
            for note in result.notes:
                log.warning("%s: %s", src.label, note)
            self._dirty = self._dirty or bool(result.points or summary.analysed)
            log.info("%s: %d runs, %d new points, %d runs re-analysed", src.label, result.runs_seen,
                     result.points, summary.analysed)
            if self.config.webhook is not None:
                self.post_findings(src, result.source_id)
            return True

    def _help_analyse(self, src: SourceConfig, source: Any) -> None:
        """Claim and analyse stale runs of a source another scheduler syncs (PostgreSQL); a store error is logged."""
        sid = source_row_id(self.store.engine, source.kind, source.uri)
        if sid is None or self.stop.is_set():
            return
        try:
            if not (todo := set(self.store.stale_runs(KIND, ANALYSIS_VERSION)) & set(self.store.run_ids_of_source(sid))):
                return
            from analysis.pipeline import refresh_analyses  # the models: only when there is work

            done = refresh_analyses(self.store, sorted(todo))
        except USER_ERRORS as exc:
            log.error("%s: helping with the analyses failed: %s", src.label, exc)
            return
        self._dirty = self._dirty or bool(done)
        log.info("%s: %d runs analysed here (claimed; the other runs by the other schedulers)", src.label, done)

    def post_findings(self, src: SourceConfig, source_id: int) -> None:
        """Post the source's new health findings at or above the webhook's level (each once; never raises)."""
        from analysis.pipeline import (  # the analysis code: only with a [webhook]
            current_health,
            current_results,
        )
        from entropy_dash.webhook import post_new_findings

        hook = self.config.webhook
        try:
            chosen = current_results(self.store, sorted(self.store.run_ids_of_source(source_id)))
            payload = current_health(self.store, chosen)  # the source's runs only, when stored
        except USER_ERRORS as exc:
            log.error("%s: webhook: cannot read the findings: %s", src.label, exc)
            return
        done = post_new_findings(self.store, hook.url, hook.level,
                                 {int(r["run_id"]): (r["run"], r["findings"]) for r in payload})
        if done.error:
            log.error("%s: %s", src.label, done.error)
        elif done.sent:
            log.info("%s: webhook: %d new finding(s) at %s or above posted", src.label, done.sent, hook.level)

    def _progress(self, done: int, total: int | None, run: str) -> None:
        if self.stop.is_set():
            raise SyncStopped(f"sync stopped by a signal after {done} runs (each of them complete; the next sync "
                              "resumes from there)")

    def run_report(self) -> None:
        """Write a report if configured and something changed since the last one (or none exists yet)."""
        rep = self.config.report
        if rep is None or self.stop.is_set():
            return
        from reports.writer import (  # plotly & co.: only with a [report]
            report_folders,
            write_scheduled_report,
        )

        with self._lock:
            if not self._dirty and report_folders(rep.out):
                return
            try:
                write_scheduled_report(self.store, rep.out, formats=list(rep.formats), keep=rep.keep)
            except (*USER_ERRORS, OSError) as exc:
                self.report_failed(rep.out, exc)
                return
            self._dirty = False
            log.info("report written to %s", report_folders(rep.out)[-1])

    def report_failed(self, out: Path, exc: Exception) -> None:
        """A failed report is a failed job: logged, counted and kept in sync_log as an error (no source)."""
        self.failures += 1
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"report to {out} failed: {why}"
        log.error("%s", message)
        try:
            self.store.finish_sync(self.store.start_sync(None), runs=0, points=0, error=message)
        except USER_ERRORS as again:
            log.error("could not record it in sync_log: %s", again)

    def job(self, src: SourceConfig, trigger: Any = None) -> None:
        """What the scheduler runs: never raises (an unexpected error is one logged line, not a traceback)."""
        try:
            self.run_source(src, trigger_since(trigger, src.every, datetime.now(UTC)) if trigger else None)
            self.run_report()
        except Exception as exc:  # noqa: BLE001 - the schedule goes on; --debug shows the traceback
            self.failures += 1
            log.error("%s: job failed: %s: %s", src.label, type(exc).__name__, exc,
                      exc_info=log.isEnabledFor(logging.DEBUG))


# ---------------------------------------------------------------------------- running
def run(config: ScheduleConfig, *, db: str | None = None, once: bool = False) -> int:
    """Open the store (``db`` or $ENTROPY_DASH_DB win over the config's ``db``) and run the schedule."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run is ours
    store = Store.open(db if db is not None else (os.environ.get("ENTROPY_DASH_DB") or config.db))
    sched = Scheduler(config, store)
    with _signals(sched.stop) as on_stop:
        if once:
            for src in config.sources:
                sched.run_source(src)
            sched.run_report()
            return 1 if sched.failures else 0
        return _run_forever(sched, on_stop)


def _run_forever(sched: Scheduler, on_stop: list[Callable[[], None]]) -> int:
    executor = ThreadPoolExecutor(max_workers=1)
    aps = BlockingScheduler(executors={"default": executor}, timezone=UTC,
                            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    now = datetime.now(UTC)
    for src in sched.config.sources:
        if src.cron is not None:
            trigger, first = cron_trigger(src.cron), None
        else:
            trigger, first = IntervalTrigger(seconds=src.every or 300.0, timezone=UTC), now  # first sync at once
        kwargs = {"next_run_time": first} if first is not None else {}
        aps.add_job(sched.job, trigger, args=[src, trigger], id=f"source-{src.index}", name=src.label, **kwargs)
        log.info("scheduled %s: %s", src.label, f"cron {src.cron!r}" if src.cron else f"every {src.every:g} s")

    def shutdown() -> None:
        if aps.running:
            aps.shutdown(wait=False)

    on_stop.append(shutdown)
    if sched.stop.is_set():  # a signal arrived before the scheduler started
        return 0
    try:
        aps.start()  # returns once shutdown() ran
    except Exception as exc:  # noqa: BLE001 - a race inside APScheduler while it shuts down on a signal
        if not sched.stop.is_set():
            raise
        log.debug("scheduler shutdown: %s: %s", type(exc).__name__, exc)
    log.info("stopping: waiting for the current job to end")
    executor.shutdown(wait=True)  # the job in progress stops after the run it is writing
    log.info("scheduler stopped")
    return 0


class _signals:
    """SIGTERM/SIGINT set ``stop`` and call the registered callbacks; a second signal forces an exit."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.callbacks: list[Callable[[], None]] = []
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> list[Callable[[], None]]:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self.callbacks

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("%s received: stopping after the run being written", signal.Signals(signum).name)
        self.stop.set()
        for cb in self.callbacks:
            cb()
