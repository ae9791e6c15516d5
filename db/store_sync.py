"""The sync log: one row per sync job, opened and closed by it; jobs whose process died are marked interrupted.
"""

from __future__ import annotations

import os
import socket

from sqlalchemy import Connection, select, update

from db import limits
from db import schema as t
from db.masking import mask_secrets
from db.store_base import StoreBase, _masked, _now, pd


class SyncLogMixin(StoreBase):
    """The sync log of ``Store``."""

    def start_sync(self, source_id: int | None) -> int:
        """Open a sync_log row for a job of this process; first mark jobs whose process died as interrupted."""
        host, pid = socket.gethostname(), os.getpid()
        with self._writer() as conn, conn.begin():
            self._close_dead_jobs(conn, host)
            return int(
                conn.execute(
                    t.sync_log.insert()
                    .values(source_id=source_id, started_at=_now(), status="running", runs=0, points=0,
                            pid=pid, host=host)
                    .returning(t.sync_log.c.id)
                ).scalar_one()
            )

    def _close_dead_jobs(self, conn: Connection, host: str) -> None:
        rows = conn.execute(
            select(t.sync_log.c.id, t.sync_log.c.pid).where(t.sync_log.c.status == "running",
                                                             t.sync_log.c.host == host)
        ).all()
        for log_id, pid in rows:
            if pid is not None and not _alive(pid):
                conn.execute(update(t.sync_log).where(t.sync_log.c.id == log_id).values(
                    status="interrupted", ended_at=_now(),
                    error=f"the job's process (pid {pid} on {host}) ended before it finished (killed?); "
                          "runs written before that are complete, a later sync fetched the rest"))

    def finish_sync(self, log_id: int, *, runs: int, points: int, error: str | None = None) -> None:
        """Close a sync_log row; ``error`` is kept as one line of at most ``limits.MAX_ERROR_CHARS``."""
        if error is not None:
            error = limits.one_line(error).replace("\0", "\ufffd")
        with self._writer() as conn, conn.begin():
            conn.execute(
                update(t.sync_log)
                .where(t.sync_log.c.id == log_id)
                .values(ended_at=_now(), runs=runs, points=points, error=mask_secrets(error) if error else error,
                        status="error" if error else "ok")
            )

    def sync_log_frame(self, limit: int = 200) -> pd.DataFrame:
        q = (
            select(t.sync_log, t.sources.c.kind, t.sources.c.uri)
            .join(t.sources, t.sources.c.id == t.sync_log.c.source_id, isouter=True)
            .order_by(t.sync_log.c.id.desc())
            .limit(limit)
        )
        return _masked(self._frame(q), "uri", "error")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
