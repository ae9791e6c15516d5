"""DB-API errors that are the user's situation, not a bug, turned into one-line ``StoreError`` messages.

``make_engine`` installs ``translate`` as the engine's ``handle_error`` hook, so every read and write of the
store (the repository, the migrations, the sync log) raises a ``StoreBusy`` or ``StoreReadOnly`` that says
what happened and what to do, instead of ``sqlite3.OperationalError: database is locked`` with a traceback.
A busy store's message names who holds it where that can be found out: the running jobs of ``sync_log``
and, on Linux, the processes that have the SQLite file open (``/proc``); on PostgreSQL the sessions that
are inside a transaction.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from db.errors import StoreBusy, StoreReadOnly
from db.masking import mask_secrets

BUSY_HINT = "try again when it has finished, or wait longer with --busy-timeout SECONDS"
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")
_SQLITE_READONLY = ("attempt to write a readonly database", "readonly database")
_PG_READONLY = ("25006",)  # read_only_sql_transaction
_PG_NO_PRIVILEGE = ("42501",)  # insufficient_privilege
_PG_LOCK_TIMEOUT = ("55P03",)  # lock_not_available (lock_timeout)


def translate(context: Any, *, busy_timeout: float) -> Exception | None:  # context: ExceptionContext
    """The ``StoreError`` to raise instead of ``context.original_exception``, or None to leave it."""
    orig = context.original_exception
    engine = context.engine
    if engine is None:
        return None
    msg = str(orig).strip()
    if engine.dialect.name == "sqlite":
        path = engine.url.database or ""
        path = path.removeprefix("file:").split("?", 1)[0]
        name = getattr(orig, "sqlite_errorname", "")
        if name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED") or msg in _SQLITE_BUSY:
            return StoreBusy(f"the store {path} is busy: another process held its write lock for more than "
                             f"{busy_timeout:g} s ({sqlite_holders(path)}); {BUSY_HINT}")
        if name.startswith("SQLITE_READONLY") or any(m in msg for m in _SQLITE_READONLY):
            return StoreReadOnly(f"the store {path} is read-only here (the file or its folder is not writable "
                                 "by this user, or the URL says ?mode=ro) and this command writes to it: make "
                                 "it writable, or give another --db")
        return None
    code = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None)
    url = engine.url.render_as_string(hide_password=True)
    if code in _PG_LOCK_TIMEOUT:
        return StoreBusy(f"the store at {url} is busy: another session held a lock for more than "
                         f"{busy_timeout:g} s ({pg_holders(engine)}); {BUSY_HINT}")
    if code in _PG_READONLY or code in _PG_NO_PRIVILEGE:
        why = "its sessions are read-only" if code in _PG_READONLY else "it may not write to the tables"
        return StoreReadOnly(f"the role {engine.url.username!r} of {url} cannot write ({why}) and this command "
                             "writes to the store: use a role that may write (read commands and the dashboard "
                             "work with this one)")
    return None


def sqlite_holders(path: str) -> str:
    """Who holds the SQLite store at ``path``: running sync jobs and processes with the file open."""
    rows: list[tuple] = []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5)
        try:
            rows = conn.execute("SELECT pid, host, started_at FROM sync_log WHERE status = 'running' "
                                "ORDER BY id DESC LIMIT 3").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        pass  # no sync_log yet (a store being created), or unreadable: the processes may still say
    found = [f"a sync job of pid {pid} on {host}, running since {str(started)[:19]}" for pid, host, started in rows]
    jobs = {pid for pid, _, _ in rows}
    found += [f"pid {pid}: {cmd}" for pid, cmd in open_by(path) if pid not in jobs]
    return "held by " + "; ".join(found[:4]) if found else "no other process of this user has it open"


def open_by(path: str, limit: int = 4) -> list[tuple[int, str]]:
    """Processes other than this one with ``path`` (or its -wal/-journal) open (Linux ``/proc``; readable
    ones only): (pid, command line, cut to 100 characters and masked)."""
    try:
        target = Path(path).resolve()
    except OSError:
        return []
    names = {str(target), f"{target}-wal", f"{target}-journal"}
    out: list[tuple[int, str]] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return out
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) in names for fd in (entry / "fd").iterdir()):
                cmd = " ".join((entry / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ").split())
                out.append((int(entry.name), mask_secrets(cmd[:100])))
        except OSError:
            continue
        if len(out) >= limit:
            break
    return out


def pg_holders(engine: Any) -> str:
    """Other sessions of the store's database inside a transaction (who may hold the lock)."""
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT pid, usename, application_name, state, xact_start FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
                "ORDER BY xact_start LIMIT 3").all()
    except Exception:  # noqa: BLE001 - a diagnosis that fails must not hide the error it explains
        return "the holder could not be looked up"
    if not rows:
        return "the holder has ended since"
    return "held by " + "; ".join(f"pid {pid} of role {user!r} ({app or 'no application name'}, {state}, in a "
                                  f"transaction since {str(since)[:19]})" for pid, user, app, state, since in rows)
