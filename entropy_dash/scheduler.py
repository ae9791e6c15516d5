"""`entropy-dash schedule --config sources.toml`: ingest every configured source on its own interval or
cron trigger, refresh the analyses of the runs that changed, and optionally write a report, until stopped.

The config file (TOML)::

    db = "sqlite:///entropy-dash.db"        # optional; --db and $ENTROPY_DASH_DB win

    [[source]]
    kind = "mlflow"                          # mlflow | wandb | wandb-offline | tensorboard | file
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

Other per-source keys: ``keys`` (list) and ``all_keys`` (bool) for mlflow, ``keys`` for wandb,
``verl_step_offset`` for file. A relative ``sqlite:///`` path in ``db`` is relative to the config file too.
Unknown keys, bad values and missing ones are a ``ConfigError`` naming the file, the source and the key.

Each job is ``ingest.sync.sync_source`` (one transaction per run, a ``sync_log`` row per job, retries on
connection errors) followed by ``refresh_analyses`` of the runs left stale. Jobs run one at a time in a
worker thread; a job whose previous run is still going is skipped, never stacked. SIGTERM or SIGINT stops
the scheduler: the current job ends after the run it is writing (every run is its own transaction, so
nothing partial is left; the job's ``sync_log`` row says it was stopped and the next sync resumes from the
watermarks) and the process exits 0. ``--once`` runs every source once, in order, and exits: 0 when all
succeeded, 1 when any failed (its error is in ``sync_log``) — for system cron and for tests.
"""

from __future__ import annotations

import logging
import math
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

from db.limits import MAX_STEP
from db.masking import mask_url
from entropy_dash.errors import USER_ERRORS, ConfigError
from ingest.errors import IngestError

log = logging.getLogger(__name__)

KINDS = ("mlflow", "wandb", "wandb-offline", "tensorboard", "file")
PATH_KINDS = ("wandb-offline", "tensorboard", "file")
RUN_KEYS = {"performance_key", "entropy_key", "keep_warmup", "warmup_steps", "performance_range", "planned_steps",
            "finished"}
COMMON_KEYS = {"kind", "uri", "every", "cron", "roles", "runs"} | RUN_KEYS
KIND_KEYS: dict[str, set[str]] = {
    "mlflow": {"experiments", "keys", "all_keys"},
    "wandb": {"keys"},
    "wandb-offline": set(),
    "tensorboard": set(),
    "file": {"verl_step_offset"},
}
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


MIN_EVERY = 1.0  # seconds: a shorter interval would sync without pause
MAX_EVERY = 366 * 86400.0


def validate_every(value: Any) -> float:
    """``every`` as seconds, at least ``MIN_EVERY`` and at most a year; ``ValueError`` saying why otherwise."""
    seconds = parse_interval(value)
    if not MIN_EVERY <= seconds <= MAX_EVERY:
        raise ValueError(f"{value!r} is {seconds:g} s: an interval must be from {MIN_EVERY:g} s to 366 days")
    return seconds


def validate_report_out(out: Path) -> str | None:
    """Why ``out`` cannot be the reports' folder (it, or a folder above it, is a file), or None."""
    for p in (out, *out.parents):
        if p.exists():
            return None if p.is_dir() else (f"{out} is a file, not a folder" if p == out else
                                            f"{p} (above {out}) is a file, not a folder")
    return None


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
    for key in ("keep_warmup", "finished"):
        if key in tab:
            if not isinstance(tab[key], bool):
                raise bad(key, f"must be true or false, got {tab[key]!r}")
            out[key] = tab[key]
    for key in ("warmup_steps", "planned_steps"):
        if key in tab:
            v = tab[key]
            if not isinstance(v, int) or isinstance(v, bool) or not (0 if key == "warmup_steps" else 1) <= v <= MAX_STEP:
                raise bad(key, f"must be a whole number of steps from {0 if key == 'warmup_steps' else 1} to "
                               f"{MAX_STEP}, got {v!r}")
            out[key] = v
    if "performance_range" in tab:
        v = tab["performance_range"]
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int | float) and not isinstance(x, bool)
                                                              for x in v) and all(math.isfinite(x) for x in v) and v[0] < v[1]):
            raise bad("performance_range", f"must be [lo, hi] of finite numbers with lo < hi, got {v!r}")
        out["performance_range"] = [float(v[0]), float(v[1])]
    return out


def _source(path: Path, base: Path, index: int, tab: Any, require_trigger: bool) -> SourceConfig:
    where = f"{path}, source #{index}"
    if not isinstance(tab, dict):
        raise ConfigError(f"{where}: expected a [[source]] table")

    def bad(key: str, what: str) -> ConfigError:
        return ConfigError(f"{where}, key {key!r}: {what}")

    kind = tab.get("kind")
    if kind is None:
        raise bad("kind", f"missing; one of {', '.join(KINDS)}")
    if kind not in KINDS:
        raise bad("kind", f"unknown source kind {kind!r}; one of {', '.join(KINDS)}")
    uri = tab.get("uri")
    if uri is None:
        hint = "a server URL or store URI" if kind == "mlflow" else (
            "ENTITY/PROJECT" if kind == "wandb" else "a file or folder path")
        raise bad("uri", f"missing ({hint})")
    if not isinstance(uri, str) or not uri.strip():
        raise bad("uri", f"must be a non-empty string, got {uri!r}")
    allowed = COMMON_KEYS | KIND_KEYS[kind]
    for key in tab:
        if key not in allowed:
            raise bad(key, f"unknown for a {kind} source (allowed: {', '.join(sorted(allowed))})")
    if kind in PATH_KINDS:
        uri = str((base / Path(uri).expanduser()).resolve())
    elif kind == "wandb" and (len(uri.strip("/").split("/")) != 2):
        raise bad("uri", f"W&B cloud projects are ENTITY/PROJECT, got {uri!r}")

    every, cron = tab.get("every"), tab.get("cron")
    if every is not None and cron is not None:
        raise bad("cron", "give either 'every' or 'cron', not both")
    seconds = None
    if every is not None:
        try:
            seconds = validate_every(every)
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
        from ingest.keys import ROLES

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
    for key in ("experiments", "keys"):
        if key in tab:
            val = tab[key]
            if not isinstance(val, list) or not all(isinstance(v, str) and v for v in val):
                raise bad(key, f"must be a list of names, got {val!r}")
            options[key] = list(val)
    if "all_keys" in tab:
        if not isinstance(tab["all_keys"], bool):
            raise bad("all_keys", f"must be true or false, got {tab['all_keys']!r}")
        options["all_keys"] = tab["all_keys"]
    if "verl_step_offset" in tab:
        off = tab["verl_step_offset"]
        if not isinstance(off, int) or isinstance(off, bool) or not -MAX_STEP <= off <= MAX_STEP:
            raise bad("verl_step_offset", f"must be an integer from -{MAX_STEP} to {MAX_STEP}, got {off!r}")
        options["verl_step_offset"] = tab["verl_step_offset"]
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
    if not isinstance(out, str) or not out.strip():
        raise bad("out", f"missing or not a folder path: {out!r}")
    why = validate_report_out((base / Path(out).expanduser()).resolve())
    if why:
        raise bad("out", f"{why}: name a folder (created if missing) to write the reports into")
    formats = tab.get("formats", list(REPORT_FORMATS))
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    if not isinstance(formats, list) or not formats or any(f not in REPORT_FORMATS for f in formats):
        raise bad("formats", f"must be a list drawn from {', '.join(REPORT_FORMATS)}, got {formats!r}")
    keep = tab.get("keep")
    if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or not 1 <= keep <= 100_000):
        raise bad("keep", f"must be a whole number from 1 to 100000, got {keep!r}")
    return ReportConfig(out=(base / Path(out).expanduser()).resolve(), formats=tuple(formats), keep=keep)


def _relative_sqlite(url: str, base: Path) -> str:
    """``sqlite:///rel.db`` → relative to the config's folder (absolute paths and other URLs unchanged)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url[len(prefix):] not in ("", ":memory:"):
        return prefix + str(base / url[len(prefix):])
    return url


def _cron_trigger(expr: str) -> Any:
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger.from_crontab(expr, timezone=UTC)


# ---------------------------------------------------------------------------- sources
def build_source(kind: str, uri: str, options: Mapping[str, Any] | None = None) -> Any:
    """The ``ingest.base.Source`` for ``kind`` (the config's kinds; ``wandb-offline`` is a folder of offline
    runs). Shared by ``entropy-dash ingest`` and the scheduler."""
    opts = dict(options or {})
    if kind == "mlflow":
        from ingest.mlflow_source import MlflowSource

        return MlflowSource(uri, opts)
    if kind == "wandb":
        from ingest.wandb_cloud import WandbCloudSource

        return WandbCloudSource(uri, opts)
    if kind == "wandb-offline":
        from ingest.wandb_offline import WandbOfflineSource

        return WandbOfflineSource(uri, opts)
    if kind == "tensorboard":
        from ingest.tensorboard import TensorBoardSource

        return TensorBoardSource(uri, opts)
    if kind == "file":
        from ingest.files import FileSource

        return FileSource(uri, opts)
    raise ConfigError(f"unknown source kind {kind!r}; one of {', '.join(KINDS)}")


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
        from analysis.pipeline import refresh_analyses
        from ingest.sync import sync_source

        if self.stop.is_set():
            return True
        with self._lock:
            try:
                source = build_source(src.kind, src.uri, src.options)
                before = self.store.source_options(source.kind, source.uri)
                result = sync_source(self.store, source, progress=self._progress)
            except SyncStopped as exc:
                log.warning("%s: %s", src.label, exc)
                return True
            except USER_ERRORS as exc:
                self.failures += 1
                log.error("%s: sync failed: %s", src.label, exc)
                return False
            for note in result.notes:
                log.warning("%s: %s", src.label, note)
            # the changed runs, and any left stale by an earlier job that was stopped or killed; every run of
            # the source when its settings (keys, warm-up, range, planned length) changed
            if self.stop.is_set():
                analysed = 0
            elif before is not None and self.store.source_options(source.kind, source.uri) != before:
                analysed = refresh_analyses(self.store, self.store.run_ids_of_source(result.source_id), force=True)
            else:
                analysed = refresh_analyses(self.store)
            self._dirty = self._dirty or bool(result.points or analysed)
            log.info("%s: %d runs, %d new points, %d runs re-analysed", src.label, result.runs_seen,
                     result.points, analysed)
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
        from reports.writer import report_folders, write_scheduled_report

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

    def job(self, src: SourceConfig) -> None:
        """What the scheduler runs: never raises (an unexpected error is one logged line, not a traceback)."""
        try:
            self.run_source(src)
            self.run_report()
        except Exception as exc:  # noqa: BLE001 - the schedule goes on; --debug shows the traceback
            self.failures += 1
            log.error("%s: job failed: %s: %s", src.label, type(exc).__name__, exc,
                      exc_info=log.isEnabledFor(logging.DEBUG))


# ---------------------------------------------------------------------------- running
def run(config: ScheduleConfig, *, db: str | None = None, once: bool = False) -> int:
    """Open the store (``db`` or $ENTROPY_DASH_DB win over the config's ``db``) and run the schedule."""
    from db import Store

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
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.interval import IntervalTrigger

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
