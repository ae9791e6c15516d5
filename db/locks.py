"""One source synced by one scheduler at a time when several share a PostgreSQL store.

A scheduler takes PostgreSQL's session advisory lock of the source (``pg_try_advisory_lock``, never waiting)
on a connection of its own, held for the whole sync and its analyses, and released when the sync ends or
the connection does (a killed scheduler's lock goes with its connection). A scheduler that cannot take it
skips the source for that trigger. The lock's key is derived from the source's identity in the store —
its kind and URI (password masked), which the ``sources`` table is unique on — as a signed 64-bit hash, so
schedulers agree on it before the source's row exists (see it in ``pg_locks``: ``locktype = 'advisory'``).

On SQLite there is one host: the lock is always taken (the scheduler's own single-job guard stays as it
was).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Engine, select

from db import schema as t
from db.masking import mask_url


def shared(engine: Engine) -> bool:
    """Whether the store is one that several hosts share (PostgreSQL) and these locks apply."""
    return engine.dialect.name == "postgresql"


def source_lock_key(kind: str, uri: str) -> int:
    """The advisory-lock key of source (kind, uri): a signed 64-bit hash of what identifies its row."""
    digest = hashlib.sha256(f"entropy-dash source\0{kind}\0{mask_url(uri)}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def source_lock(engine: Engine, kind: str, uri: str) -> Iterator[bool]:
    """Try to take the source's lock for the block: True when this process holds it (always on SQLite),
    False when another session does (the block should then leave the source alone)."""
    if not shared(engine):
        yield True
        return
    with _advisory(engine, source_lock_key(kind, uri), wait=False) as held:
        yield held


@contextmanager
def _advisory(engine: Engine, key: int, *, wait: bool) -> Iterator[bool]:
    """PostgreSQL's session advisory lock ``key`` on a connection of its own for the block: waited for
    (``wait``) or tried once; yields whether it is held, and releases it after the block."""
    with engine.connect() as conn:
        if wait:
            conn.exec_driver_sql("SET lock_timeout = 0")  # the other may take longer than a busy timeout: wait
            conn.exec_driver_sql("SELECT pg_advisory_lock(%(k)s)", {"k": key})
            conn.exec_driver_sql("RESET lock_timeout")
            held = True
        else:
            held = bool(conn.exec_driver_sql("SELECT pg_try_advisory_lock(%(k)s)", {"k": key}).scalar())
        conn.commit()  # the lock is the session's, not the transaction's: end the transaction that took it
        try:
            yield held
        finally:
            if held:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(%(k)s)", {"k": key})
                conn.commit()


def synced_since(engine: Engine, kind: str, uri: str, since: datetime, *, host: str, pid: int) -> bool:
    """Whether another process (not ``pid`` on ``host``) started a sync of source (kind, uri) at or after
    ``since`` (a trigger's fire time): that sync was this trigger's, so the source is not synced again."""
    s, log = t.sources, t.sync_log
    q = (select(log.c.id).join(s, s.c.id == log.c.source_id)
         .where(s.c.kind == kind, s.c.uri == mask_url(uri), log.c.started_at >= since,
                ~((log.c.host == host) & (log.c.pid == pid)))
         .limit(1))
    with engine.connect() as conn:
        return conn.execute(q).first() is not None


#: the key of the lock that lets one process at a time write the results across runs
CROSS_RUN_KEY = source_lock_key("cross-run", "")


@contextmanager
def cross_run_lock(engine: Engine) -> Iterator[None]:
    """Wait for (PostgreSQL) the lock of the results across runs, so that two processes never rewrite them
    at once; nothing on SQLite, whose writers queue on the store anyway."""
    if not shared(engine):
        yield
        return
    with _advisory(engine, CROSS_RUN_KEY, wait=True):
        yield


def source_row_id(engine: Engine, kind: str, uri: str) -> int | None:
    """The id of source (kind, uri) in the store, None before its first sync (read only: never creates it)."""
    s = t.sources
    with engine.connect() as conn:
        sid = conn.execute(select(s.c.id).where(s.c.kind == kind, s.c.uri == mask_url(uri))).scalar()
    return None if sid is None else int(sid)
