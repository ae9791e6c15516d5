"""``sources.toml``, read and checked: the sources of ``entropy-dash schedule`` with their triggers, options
and per-run settings, and the optional report (the format: ``entropy_dash/scheduler.py``). Each kind's own
keys come from the source registry (``ingest.registry``); every error is a ``ConfigError`` naming the file,
the source and the key."""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from db.limits import MAX_STEP
from db.masking import mask_url
from entropy_dash.errors import ConfigError
from entropy_dash.webhook import webhook_settings
from ingest import registry
from ingest.keys import ROLES

RUN_KEYS = {"performance_key", "entropy_key", "keep_warmup", "warmup_steps", "performance_range", "planned_steps",
            "finished"}
COMMON_KEYS = {"kind", "uri", "every", "cron", "roles", "runs"} | RUN_KEYS
REPORT_KEYS = {"out", "formats", "keep"}
REPORT_FORMATS = ("html", "md", "json")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$")


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
    webhook: Any = None  # entropy_dash.webhook.WebhookSettings: [webhook], else $ENTROPY_DASH_WEBHOOK_URL


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
    unknown = set(doc) - {"db", "source", "report", "webhook"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} "
                          "(expected db, [[source]], [report], [webhook])")
    db = doc.get("db")
    if db is not None and (not isinstance(db, str) or not db.strip()):
        raise ConfigError(f"{path}: key 'db' must be a database URL string, got {db!r}")
    tables = doc.get("source")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: no [[source]] tables: add at least one (kind, uri, every or cron)")
    sources = tuple(_source(path, base, i, tab, require_trigger) for i, tab in enumerate(tables, start=1))
    report = _report(path, base, doc["report"]) if "report" in doc else None
    if "webhook" in doc and not isinstance(doc["webhook"], dict):
        raise ConfigError(f"{path}: [webhook] must be a table (url, level), got {type(doc['webhook']).__name__}")
    webhook = webhook_settings(doc.get("webhook"), where=str(path))
    return ScheduleConfig(path=path, sources=sources, db=_relative_sqlite(db, base) if db else None, report=report,
                          webhook=webhook)


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
            seconds = validate_every(every)
        except ValueError as exc:
            raise bad("every", f"{exc}; use a number of seconds or 30s, 5m, 1h, 1d") from None
    if cron is not None:
        if not isinstance(cron, str):
            raise bad("cron", f"must be a crontab line such as '*/10 * * * *', got {cron!r}")
        try:
            cron_trigger(cron)
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


def cron_trigger(expr: str) -> Any:
    return CronTrigger.from_crontab(expr, timezone=UTC)
