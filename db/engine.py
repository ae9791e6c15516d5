"""Engine from a database URL: SQLite (embedded default) or PostgreSQL (server), chosen by URL scheme."""

from __future__ import annotations

import math
import os
from functools import partial
from urllib.parse import parse_qsl

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from db.diagnose import translate
from db.errors import StoreConfigError
from db.masking import mask_secrets, mask_url

DEFAULT_DB_URL = "sqlite:///entropy-dash.db"
ENV_VAR = "ENTROPY_DASH_DB"
#: how long a command waits for another one's lock on the store (seconds; the CLI's --busy-timeout sets it)
BUSY_ENV = "ENTROPY_DASH_BUSY_TIMEOUT"
DEFAULT_BUSY_TIMEOUT = 60.0
MAX_BUSY_TIMEOUT = 86_400.0
#: options a sqlite:/// URL may carry after '?' (SQLite's URI parameters and the driver's own)
SQLITE_URI_OPTIONS = {"mode", "cache", "immutable", "nolock", "vfs", "psow", "modeof"}
SQLITE_DRIVER_OPTIONS = {"uri", "timeout", "check_same_thread", "isolation_level", "detect_types", "cached_statements"}


def resolve_db_url(url: str | None = None) -> str:
    """``--db`` wins, then ``$ENTROPY_DASH_DB``, then a SQLite file in the working directory. An empty
    ``--db`` is refused (it would otherwise fall back to the default silently); an empty variable is unset."""
    if url is not None and not url.strip():
        raise StoreConfigError("--db is empty: give a database URL such as sqlite:///entropy-dash.db or "
                               "postgresql://user@host/db (or leave --db out for the default)")
    url = url or os.environ.get(ENV_VAR) or DEFAULT_DB_URL
    # plain postgres URLs get the psycopg 3 driver this project installs
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    return url


#: the DB-API driver each backend is used with (the ones this project installs)
DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}


def busy_timeout(value: float | str | None = None) -> float:
    """Seconds to wait for a lock: ``value``, else ``$ENTROPY_DASH_BUSY_TIMEOUT``, else 60."""
    raw = value if value is not None else (os.environ.get(BUSY_ENV) or DEFAULT_BUSY_TIMEOUT)
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = math.nan
    if not 0 <= seconds <= MAX_BUSY_TIMEOUT:
        raise StoreConfigError(f"busy timeout {raw!r} is not a number of seconds in [0, {MAX_BUSY_TIMEOUT:g}] "
                               f"(--busy-timeout or ${BUSY_ENV})")
    return seconds


def _sqlite_url(url: str, parsed: URL, shown: str) -> URL:
    """A sqlite URL checked: kept in a file (never in memory), its path not cut at '?' or '#', and SQLite's
    URI options (``?mode=ro``) really applied (the driver ignores them without ``uri=true``)."""
    memory = "refused: an in-memory store keeps nothing once the command ends; give a file, e.g. " \
             "--db sqlite:///entropy-dash.db"
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:") or \
            str(parsed.query.get("mode", "")) == "memory":
        raise StoreConfigError(f"{shown}: {memory}")
    raw_query = url.split("?", 1)[1] if "?" in url else ""
    pairs = parse_qsl(raw_query, keep_blank_values=True) if raw_query else []
    unknown = [k for k, _ in pairs if k not in SQLITE_URI_OPTIONS | SQLITE_DRIVER_OPTIONS]
    if "#" in raw_query or unknown or (raw_query and not pairs):
        raise StoreConfigError(f"{shown}: the file's path would be cut at '?' (everything after it is read as "
                               f"options, {'and ' + repr(unknown[0]) + ' is none' if unknown else 'not a name'}): "
                               "write '?' in a file name as %3F and '#' as %23, or rename the file "
                               f"(options a SQLite URL takes: {', '.join(sorted(SQLITE_URI_OPTIONS))})")
    if database.startswith("file:") or str(parsed.query.get("uri", "")).lower() == "true":
        return parsed
    if any(k in SQLITE_URI_OPTIONS for k in parsed.query):  # sqlite:///x.db?mode=ro → file:x.db?mode=ro&uri=true
        escaped = database.replace("%", "%25").replace("?", "%3F").replace("#", "%23")  # what ends a URI's path
        return parsed.set(database="file:" + escaped, query={**parsed.query, "uri": "true"})
    return parsed


def make_engine(url: str | None = None, *, busy: float | None = None) -> Engine:
    """The engine of the store at ``url``; a lock held by another writer is waited for ``busy`` seconds
    (default: ``busy_timeout()``), then a ``StoreBusy`` naming who holds it."""
    url = resolve_db_url(url)
    wait = busy_timeout(busy)
    shown = mask_url(url)  # a mistyped URL is echoed without its password
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreConfigError(f"not a database URL: {shown!r} ({mask_secrets(str(exc))}; expected "
                               "sqlite:///FILE or postgresql://user:password@host:5432/db)") from None
    backend = parsed.get_backend_name()
    if backend not in DRIVERS:
        raise StoreConfigError(f"unsupported database {backend!r} in {shown!r}: use sqlite:///FILE or "
                               "postgresql://…")
    driver = parsed.get_driver_name()
    if driver != DRIVERS[backend]:
        plain = "sqlite:///FILE" if backend == "sqlite" else "postgresql://user:password@host/db"
        raise StoreConfigError(f"database driver {driver!r} in {shown!r} is not supported: write the URL as "
                               f"{plain} (the {DRIVERS[backend]} driver is used)")
    try:
        if backend == "sqlite":
            parsed = _sqlite_url(url, parsed, shown)
            engine = create_engine(parsed, connect_args={"timeout": wait})
            read_only = str(parsed.query.get("mode", "")) == "ro"  # sqlite:///file:PATH?mode=ro&uri=true
            pragmas = _sqlite_read_only_pragmas if read_only else _sqlite_pragmas
            event.listen(engine, "connect", partial(pragmas, busy_ms=int(wait * 1000)))
            event.listen(engine, "begin", _sqlite_begin)
        else:
            engine = create_engine(url, pool_pre_ping=True, connect_args={
                "connect_timeout": 10, "application_name": f"entropy-dash (pid {os.getpid()})",
                "options": " ".join([f"-c lock_timeout={int(wait * 1000)}", str(parsed.query.get("options", ""))]).strip()})
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StoreConfigError(f"cannot open {shown!r}: {mask_secrets(str(exc))}") from None
    event.listen(engine, "handle_error", partial(_translate, busy_timeout=wait))
    return engine


def _translate(context, *, busy_timeout: float) -> None:  # noqa: ANN001 - sqlalchemy ExceptionContext
    """A locked or read-only store as a one-line ``StoreError`` (``db.diagnose``) instead of the driver's."""
    error = translate(context, busy_timeout=busy_timeout)
    if error is not None:
        raise error from context.original_exception


def _sqlite_pragmas(dbapi_conn, _record, *, busy_ms: int) -> None:  # noqa: ANN001 - DB-API connection
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={busy_ms}")  # two ingests at once wait for each other
    cur.execute("PRAGMA journal_mode=WAL")  # readers (dashboard) never block the ingest writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_read_only_pragmas(dbapi_conn, _record, *, busy_ms: int) -> None:  # noqa: ANN001 - DB-API connection
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={busy_ms}")  # the journal mode is the file's: a read-only one cannot change it
    cur.close()


def _sqlite_begin(conn) -> None:  # noqa: ANN001 - SQLAlchemy Connection
    """Writers take the write lock up front (BEGIN IMMEDIATE) so that two ingests at once queue on
    busy_timeout instead of failing with 'database is locked' on lock upgrade; readers stay deferred."""
    mode = "IMMEDIATE" if conn.get_execution_options().get("writer") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")
