"""Sources: the source rows (URIs stored masked, merged options), the per-key watermarks of their runs, the
read positions of file sources and the per-source summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, func, select, update

from db import schema as t
from db.masking import MASK, mask_url
from db.records import FileState
from db.store_base import StoreBase, _masked, _now, pd
from db.values import json_safe


class SourcesMixin(StoreBase):
    """The sources of ``Store`` and what is kept per source between syncs."""

    def source_id(self, kind: str, uri: str, options: Mapping[str, Any] | None = None) -> int:
        """Get or create the source row for (kind, uri). ``options`` are merged into the stored ones (a key
        given again replaces its value; keys not given are kept, so a plain re-ingest keeps the user's key
        choices). The URI is stored with its password masked (``http://user:***@host``): credentials are
        never written to the store (a source row written with one before is rewritten masked)."""
        uri = mask_url(uri)
        with self._writer() as conn, conn.begin():
            self._mask_stored_uri(conn, kind, uri)
            conn.execute(self._insert(t.sources).values(kind=kind, uri=uri, options=dict(options or {}),
                                                        created_at=_now())
                         .on_conflict_do_nothing(index_elements=["kind", "uri"]))
            sid, stored = conn.execute(
                select(t.sources.c.id, t.sources.c.options).where(t.sources.c.kind == kind, t.sources.c.uri == uri)
            ).one()
            merged = {**(stored or {}), **json_safe(options or {})}
            if merged != (stored or {}):
                conn.execute(update(t.sources).where(t.sources.c.id == sid).values(options=merged))
            return int(sid)

    def source_options(self, kind: str, uri: str) -> dict[str, Any] | None:
        """The stored options of source (kind, uri), None when there is no such source."""
        with self.engine.connect() as conn:
            row = conn.execute(select(t.sources.c.options).where(t.sources.c.kind == kind,
                                                                 t.sources.c.uri == mask_url(uri))).first()
        return None if row is None else dict(row[0] or {})

    def _mask_stored_uri(self, conn: Connection, kind: str, uri: str) -> None:
        if MASK not in uri:
            return  # there was no password in it: nothing to look for
        rows = conn.execute(select(t.sources.c.id, t.sources.c.uri).where(t.sources.c.kind == kind)).all()
        stored = {u for _, u in rows}
        for sid, old in rows:
            if old != uri and mask_url(old) == uri and uri not in stored:
                conn.execute(update(t.sources).where(t.sources.c.id == sid).values(uri=uri))
                return

    def run_ids_of_source(self, source_id: int) -> list[int]:
        with self.engine.connect() as conn:
            return [int(i) for i in conn.execute(select(t.runs.c.id).where(t.runs.c.source_id == source_id)
                                                 .order_by(t.runs.c.id)).scalars()]

    def sources_frame(self) -> pd.DataFrame:
        return _masked(self._frame(select(t.sources).order_by(t.sources.c.id)), "uri")

    def source_summary(self) -> pd.DataFrame:
        """Per source, from the runs table and the sync log only (never the points): runs, syncs, points
        written by its syncs (new or changed points, summed over the log) and its last sync (id, start,
        end, status, points, error)."""
        r, sl = t.runs, t.sync_log
        runs = select(r.c.source_id, func.count().label("runs")).group_by(r.c.source_id).subquery()
        logs = (select(sl.c.source_id, func.count().label("syncs"),
                       func.coalesce(func.sum(sl.c.points), 0).label("points_written"),
                       func.max(sl.c.id).label("last_id")).group_by(sl.c.source_id).subquery())
        last = sl.alias("last_sync")
        q = (select(t.sources.c.id, t.sources.c.kind, t.sources.c.uri, t.sources.c.options,
                    func.coalesce(runs.c.runs, 0).label("runs"), func.coalesce(logs.c.syncs, 0).label("syncs"),
                    func.coalesce(logs.c.points_written, 0).label("points_written"),
                    last.c.started_at.label("last_started_at"), last.c.ended_at.label("last_ended_at"),
                    last.c.status.label("last_status"), last.c.points.label("last_points"),
                    last.c.error.label("last_error"))
             .join(runs, runs.c.source_id == t.sources.c.id, isouter=True)
             .join(logs, logs.c.source_id == t.sources.c.id, isouter=True)
             .join(last, last.c.id == logs.c.last_id, isouter=True)
             .order_by(t.sources.c.id))
        return _masked(self._frame(q), "uri", "last_error")

    def _advance_watermarks(self, conn: Connection, marks: Sequence[tuple[int, int, int]]) -> None:
        """Raise each (run_id, key_id)'s watermark to the given last step (never lower it)."""
        if not marks:
            return
        mark = "?" if self._dialect == "sqlite" else "%s"
        top = "max" if self._dialect == "sqlite" else "greatest"
        now = _now() if self._dialect == "postgresql" else _now().strftime("%Y-%m-%d %H:%M:%S.%f")
        conn.exec_driver_sql(
            f"INSERT INTO sync_state (run_id, key_id, last_step, updated_at) VALUES ({mark}, {mark}, {mark}, {mark}) "
            f"ON CONFLICT (run_id, key_id) DO UPDATE SET last_step = {top}(sync_state.last_step, "
            "excluded.last_step), updated_at = excluded.updated_at",
            [(int(r), int(k), int(st), now) for r, k, st in marks])

    def watermarks(self, source_id: int) -> dict[str, dict[str, int]]:
        """Last stored step per key of every run of a source: {external_id: {key: last_step}}."""
        q = (
            select(t.runs.c.external_id, t.metric_keys.c.name, t.sync_state.c.last_step)
            .join(t.sync_state, t.sync_state.c.run_id == t.runs.c.id)
            .join(t.metric_keys, t.metric_keys.c.id == t.sync_state.c.key_id)
            .where(t.runs.c.source_id == source_id)
        )
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for ext, key, step in conn.execute(q):
                out.setdefault(ext, {})[key] = int(step)
        return out

    def file_states(self, source_id: int) -> dict[str, FileState]:
        """What was read of each file of a file source: {resolved path: FileState}."""
        fs = t.file_state
        with self.engine.connect() as conn:
            rows = conn.execute(select(fs).where(fs.c.source_id == source_id)).all()
        return {r.path: FileState(path=r.path, size=int(r.size), mtime=float(r.mtime),
                                  inode=None if r.inode is None else int(r.inode), head_sha=r.head_sha,
                                  offset=int(r.offset), parser_state=dict(r.parser_state or {}))
                for r in rows}

    def save_file_states(self, source_id: int, states: Sequence[FileState]) -> None:
        """Save file read positions that came with no points (e.g. only blank lines were appended)."""
        if states:
            with self._writer() as conn, conn.begin():
                self._save_file_states(conn, source_id, states)

    def _save_file_states(self, conn: Connection, source_id: int, states: Sequence[FileState]) -> None:
        rows = [{"source_id": source_id, "path_hash": _path_hash(s.path), "path": s.path, "size": s.size,
                 "mtime": s.mtime, "inode": s.inode, "head_sha": s.head_sha, "offset": s.offset,
                 "parser_state": json_safe(s.parser_state), "updated_at": _now()} for s in states]
        stmt = self._insert(t.file_state)
        cols = ("path", "size", "mtime", "inode", "head_sha", "offset", "parser_state", "updated_at")
        conn.execute(stmt.on_conflict_do_update(index_elements=["source_id", "path_hash"],
                                                set_={c: getattr(stmt.excluded, c) for c in cols}), rows)


def _path_hash(path: str) -> str:
    import hashlib

    return hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()
