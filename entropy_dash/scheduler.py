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
    [source.runs."run-name"]                 # optional per-run settings (any of the six above)
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
watermarks) and the process exits 0. ``--once`` runs every source once, in order, and exits: 0 when all
succeeded, 1 when any failed (its error is in ``sync_log``) — for system cron and for tests.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from db import Store
from db.masking import mask_url
from entropy_dash.errors import USER_ERRORS, ConfigError
from entropy_dash.sync_workflow import sync_and_analyse
from ingest import registry
from ingest.errors import IngestError
from ingest.keys import ROLES

log = logging.getLogger(__name__)

RUN_KEYS = {"performance_key", "entropy_key", "keep_warmup", "warmup_steps", "performance_range", "planned_steps"}
COMMON_KEYS = {"kind", "uri", "every", "cron", "roles", "runs"} | RUN_KEYS
REPORT_KEYS = {"out", "formats", "keep"}
REPORT_FORMATS = ("html", "md", "json")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$")


# ---------------------------------------------------------------------------- config
@dataclass(frozen=True)
class SourceConfig:
    """One ``[[source]]`` table: what to read, how often, and the options handed to the source."""

    index: int  # 1-based position in the file
    kind: str
    uri: str
    options: Mapping[str, Any]
    every: float | None = None  # seconds
    cron: str | None = None

    @property
    def label(self) -> str:
        return f"source #{self.index} ({self.kind} {mask_url(self.uri)})"  # logged: never a password


@dataclass(frozen=True)
class ReportConfig:
    out: Path
    formats: tuple[str, ...] = REPORT_FORMATS
    keep: int | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    path: Path
    sources: tuple[SourceConfig, ...]
    db: str | None = None
    report: ReportConfig | None = None


def parse_interval(value: Any) -> float:
    """Seconds from ``300``, ``"30s"``, ``"5m"``, ``"1.5h"``, ``"1d"``; ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an interval")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _INTERVAL.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not an interval")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{value!r} is not a positive interval")
    return seconds


def load_config(path: str | Path, *, require_trigger: bool = True) -> ScheduleConfig:
    """Read and check a sources.toml; raises ``ConfigError`` naming the file, the source and the key."""
    path = Path(path).expanduser()
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    base = path.resolve().parent
    unknown = set(doc) - {"db", "source", "report"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} (expected db, [[source]], [report])")
    db = doc.get("db")
    if db is not None and (not isinstance(db, str) or not db.strip()):
        raise ConfigError(f"{path}: key 'db' must be a database URL string, got {db!r}")
    tables = doc.get("source")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: no [[source]] tables: add at least one (kind, uri, every or cron)")
    sources = tuple(_source(path, base, i, tab, require_trigger) for i, tab in enumerate(tables, start=1))
    report = _report(path, base, doc["report"]) if "report" in doc else None
    return ScheduleConfig(path=path, sources=sources, db=_relative_sqlite(db, base) if db else None, report=report)


def _run_settings(tab: dict[str, Any], bad: Any) -> dict[str, Any]:
    """The analysis settings of a source or a run (``analysis.settings``), checked."""
    out: dict[str, Any] = {}
    for key in ("performance_key", "entropy_key"):
        if key in tab:
            if not isinstance(tab[key], str) or not tab[key]:
                raise bad(key, f"must be a metric name, got {tab[key]!r}")
            out[key] = tab[key]
    if "keep_warmup" in tab:
        if not isinstance(tab["keep_warmup"], bool):
            raise bad("keep_warmup", f"must be true or false, got {tab['keep_warmup']!r}")
        out["keep_warmup"] = tab["keep_warmup"]
    for key in ("warmup_steps", "planned_steps"):
        if key in tab:
            v = tab[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "warmup_steps" else 1):
                raise bad(key, f"must be a whole number of steps, got {v!r}")
            out[key] = v
    if "performance_range" in tab:
        v = tab["performance_range"]
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int | float) and not isinstance(x, bool)
                                                              for x in v) and v[0] < v[1]):
            raise bad("performance_range", f"must be [lo, hi] with lo < hi, got {v!r}")
        out["performance_range"] = [float(v[0]), float(v[1])]
    return out


def _source(path: Path, base: Path, index: int, tab: Any, require_trigger: bool) -> SourceConfig:
    where = f"{path}, source #{index}"
    if not isinstance(tab, dict):
        raise ConfigError(f"{where}: expected a [[source]] table")

    def bad(key: str, what: str) -> ConfigError:
        return ConfigError(f"{where}, key {key!r}: {what}")

    known = registry.kinds()
    kind = tab.get("kind")
    if kind is None:
        raise bad("kind", f"missing; one of {', '.join(known)}")
    if kind not in known:
        raise bad("kind", f"unknown source kind {kind!r}; one of {', '.join(known)}")
    spec = known[kind]
    uri = tab.get("uri")
    if uri is None:
        raise bad("uri", f"missing ({spec.uri_metavar}: {spec.uri_help})")
    if not isinstance(uri, str) or not uri.strip():
        raise bad("uri", f"must be a non-empty string, got {uri!r}")
    allowed = COMMON_KEYS | spec.config_keys
    for key in tab:
        if key not in allowed:
            raise bad(key, f"unknown for a {kind} source (allowed: {', '.join(sorted(allowed))})")
    try:
        uri = registry.resolve_config_uri(kind, uri, base)
    except ValueError as exc:
        raise bad("uri", str(exc)) from None

    every, cron = tab.get("every"), tab.get("cron")
    if every is not None and cron is not None:
        raise bad("cron", "give either 'every' or 'cron', not both")
    seconds = None
    if every is not None:
        try:
            seconds = parse_interval(every)
        except ValueError as exc:
            raise bad("every", f"{exc}; use a number of seconds or 30s, 5m, 1h, 1d") from None
    if cron is not None:
        if not isinstance(cron, str):
            raise bad("cron", f"must be a crontab line such as '*/10 * * * *', got {cron!r}")
        try:
            _cron_trigger(cron)
        except ValueError as exc:
            raise bad("cron", f"{cron!r} is not a crontab line ({exc})") from None
    if require_trigger and every is None and cron is None:
        raise bad("every", "missing: give 'every' (e.g. \"5m\") or 'cron' (e.g. \"*/10 * * * *\")")

    options: dict[str, Any] = {}
    roles = tab.get("roles")
    if roles is not None:
        if not isinstance(roles, dict):
            raise bad("roles", "must be a table of metric key = role")
        for k, r in roles.items():
            if r not in ROLES:
                raise bad("roles", f"role {r!r} of {k!r} is not one of {', '.join(ROLES)}")
        options["roles"] = dict(roles)
    options.update(_run_settings(tab, bad))
    runs = tab.get("runs")
    if runs is not None:
        if not isinstance(runs, dict) or not all(isinstance(c, dict) and c for c in runs.values()):
            raise bad("runs", "must be tables [source.runs.\"run name\"] of per-run settings ("
                      + ", ".join(sorted(RUN_KEYS)) + ")")
        options["runs"] = {}
        for name, choice in runs.items():
            unknown = set(choice) - RUN_KEYS
            if unknown:
                raise bad("runs", f"run {name!r}: unknown key {sorted(unknown)[0]!r} (allowed: "
                          f"{', '.join(sorted(RUN_KEYS))})")
            options["runs"][name] = _run_settings(choice, lambda k, what, n=name: bad("runs", f"run {n!r}, {k}: {what}"))
    try:
        options.update(registry.options_from_config(kind, tab))
    except registry.OptionError as exc:
        raise bad(exc.key, exc.what) from None
    return SourceConfig(index=index, kind=kind, uri=uri, options=options, every=seconds, cron=cron)


def _report(path: Path, base: Path, tab: Any) -> ReportConfig:
    def bad(key: str, what: str) -> ConfigError:
        return ConfigError(f"{path}, [report], key {key!r}: {what}")

    if not isinstance(tab, dict):
        raise ConfigError(f"{path}: 'report' must be a [report] table")
    for key in tab:
        if key not in REPORT_KEYS:
            raise bad(key, f"unknown (allowed: {', '.join(sorted(REPORT_KEYS))})")
    out = tab.get("out")
    if not isinstance(out, str) or not out:
        raise bad("out", f"missing or not a folder path: {out!r}")
    formats = tab.get("formats", list(REPORT_FORMATS))
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    if not isinstance(formats, list) or not formats or any(f not in REPORT_FORMATS for f in formats):
        raise bad("formats", f"must be a list drawn from {', '.join(REPORT_FORMATS)}, got {formats!r}")
    keep = tab.get("keep")
    if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 1):
        raise bad("keep", f"must be a whole number >= 1, got {keep!r}")
    return ReportConfig(out=(base / Path(out).expanduser()).resolve(), formats=tuple(formats), keep=keep)


def _relative_sqlite(url: str, base: Path) -> str:
    """``sqlite:///rel.db`` → relative to the config's folder (absolute paths and other URLs unchanged)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url[len(prefix):] not in ("", ":memory:"):
        return prefix + str(base / url[len(prefix):])
    return url


def _cron_trigger(expr: str) -> Any:
    return CronTrigger.from_crontab(expr, timezone=UTC)


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

    def run_source(self, src: SourceConfig) -> bool:
        """One sync of ``src`` + analyses (+ report); False when it failed (the error is in sync_log)."""
        if self.stop.is_set():
            return True
        with self._lock:
            try:
                source = registry.build(src.kind, src.uri, src.options)
                summary = sync_and_analyse(self.store, source, progress=self._progress, stopped=self.stop.is_set)
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
            return True

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
            except USER_ERRORS as exc:
                log.error("report to %s failed: %s", rep.out, exc)
                return
            self._dirty = False
            log.info("report written to %s", report_folders(rep.out)[-1])

    def job(self, src: SourceConfig) -> None:
        self.run_source(src)
        self.run_report()


# ---------------------------------------------------------------------------- running
def run(config: ScheduleConfig, *, db: str | None = None, once: bool = False) -> int:
    """Open the store (``db`` or $ENTROPY_DASH_DB win over the config's ``db``) and run the schedule."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run is ours
    store = Store.open(db or os.environ.get("ENTROPY_DASH_DB") or config.db)
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
            trigger, first = _cron_trigger(src.cron), None
        else:
            trigger, first = IntervalTrigger(seconds=src.every or 300.0, timezone=UTC), now  # first sync at once
        kwargs = {"next_run_time": first} if first is not None else {}
        aps.add_job(sched.job, trigger, args=[src], id=f"source-{src.index}", name=src.label, **kwargs)
        log.info("scheduled %s: %s", src.label, f"cron {src.cron!r}" if src.cron else f"every {src.every:g} s")

    def shutdown() -> None:
        if aps.running:
            aps.shutdown(wait=False)

    on_stop.append(shutdown)
    if sched.stop.is_set():  # a signal arrived before the scheduler started
        return 0
    aps.start()  # returns once shutdown() ran
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
