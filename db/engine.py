"""Engine from a database URL: SQLite (embedded default) or PostgreSQL (server), chosen by URL scheme."""

from __future__ import annotations

import os

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from db.errors import StoreConfigError
from db.masking import mask_secrets, mask_url

DEFAULT_DB_URL = "sqlite:///entropy-dash.db"
ENV_VAR = "ENTROPY_DASH_DB"


def resolve_db_url(url: str | None = None) -> str:
    """``--db`` wins, then ``$ENTROPY_DASH_DB``, then a SQLite file in the working directory."""
    url = url or os.environ.get(ENV_VAR) or DEFAULT_DB_URL
    # plain postgres URLs get the psycopg 3 driver this project installs
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    return url


#: the DB-API driver each backend is used with (the ones this project installs)
DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}


def make_engine(url: str | None = None) -> Engine:
    url = resolve_db_url(url)
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
            engine = create_engine(url, connect_args={"timeout": 60})
            read_only = str(parsed.query.get("mode", "")) == "ro"  # sqlite:///file:PATH?mode=ro&uri=true
            event.listen(engine, "connect", _sqlite_read_only_pragmas if read_only else _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StoreConfigError(f"cannot open {shown!r}: {mask_secrets(str(exc))}") from None


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (dashboard) never block the ingest writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")  # two ingests at once wait for each other
    cur.close()


def _sqlite_read_only_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=60000")  # the journal mode is the file's: a read-only one cannot change it
    cur.close()


def _sqlite_begin(conn) -> None:  # noqa: ANN001 - SQLAlchemy Connection
    """Writers take the write lock up front (BEGIN IMMEDIATE) so that two ingests at once queue on
    busy_timeout instead of failing with 'database is locked' on lock upgrade; readers stay deferred."""
    mode = "IMMEDIATE" if conn.get_execution_options().get("writer") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")
