"""Which health findings were posted to the webhook (table ``webhook_sent``, migration 0004): one row per
(run, detector, benchmark, severity), written after the webhook accepted the message, so each finding is
posted once. A finding that turns from ``warn`` to ``critical`` is a new one; one that returns at a
severity already posted is not posted again.

Kept out of ``db.store``: ``sent_keys`` reads, ``mark_sent`` writes (idempotent: a row already there is
left alone), both on a ``Store``'s engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import import_module
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKey, Integer, String, Table, select, tuple_

from db.limits import external_id
from db.schema import metadata

MAX_DETECTOR_CHARS = 64
MAX_BENCHMARK_CHARS = 255

webhook_sent = Table(
    "webhook_sent",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("detector", String(MAX_DETECTOR_CHARS), primary_key=True),
    Column("benchmark", String(MAX_BENCHMARK_CHARS), primary_key=True),  # "" when the finding has none
    Column("severity", String(16), primary_key=True),
    Column("sent_at", DateTime(timezone=True), nullable=False),
)

#: (run id, detector, benchmark or None, severity)
SentKey = tuple[int, str, str | None, str]


def _row(key: SentKey) -> tuple[int, str, str, str]:
    run_id, detector, benchmark, severity = key
    bench = external_id(benchmark or "") if len(benchmark or "") > MAX_BENCHMARK_CHARS else (benchmark or "")
    return int(run_id), str(detector)[:MAX_DETECTOR_CHARS], bench, str(severity)[:16]


def sent_keys(store: Any, keys: Iterable[SentKey]) -> set[SentKey]:
    """Those of ``keys`` already posted."""
    wanted = {_row(k): k for k in keys}
    if not wanted:
        return set()
    t = webhook_sent
    cols = (t.c.run_id, t.c.detector, t.c.benchmark, t.c.severity)
    found: set[tuple] = set()
    rows = list(wanted)
    with store.engine.connect() as conn:
        for i in range(0, len(rows), 200):
            chunk = rows[i: i + 200]
            found |= {tuple(r) for r in conn.execute(select(*cols).where(tuple_(*cols).in_(chunk))).all()}
    return {wanted[r] for r in found if r in wanted}


def mark_sent(store: Any, keys: Iterable[SentKey]) -> None:
    """Record ``keys`` as posted (now)."""
    rows = [dict(zip(("run_id", "detector", "benchmark", "severity"), _row(k), strict=True)) | {"sent_at":
            datetime.now(UTC)} for k in keys]
    if not rows:
        return
    dialect = "postgresql" if store.engine.dialect.name == "postgresql" else "sqlite"
    stmt = import_module(f"sqlalchemy.dialects.{dialect}").insert(webhook_sent).on_conflict_do_nothing()
    with store.engine.connect().execution_options(writer=True) as conn, conn.begin():
        conn.execute(stmt, rows)
