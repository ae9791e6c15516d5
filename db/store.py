"""The repository: every read and write of the store goes through ``Store``.

One SQLAlchemy implementation serves both backends (SQLite, PostgreSQL); the dialect only decides the
upsert statement. Writes of a run happen in one transaction: the run row, its new or changed points, its
watermarks and its data version land together or not at all, so a killed ingest never leaves half a run.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import import_module
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, Engine, and_, func, select, update
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from db import limits, lod
from db import schema as t
from db.engine import make_engine
from db.errors import StoreError, StoreReadOnly, StoreTooNew
from db.masking import MASK, mask_secrets, mask_url
from db.migrate import current_revision, head_revision, is_initialised, known_revisions, upgrade
from db.records import FileState, RunData, RunInfo, planned_length
from db.values import finite_number, json_safe

POINT_BATCH = 5_000
#: schema revisions that had no downsampled levels (migration 0003 added them): a writer opening such a store
#: computes them from the stored points once
LOD_LESS_REVISIONS = ("0001", "0002")

if TYPE_CHECKING:
    import pandas as pd
else:
    class _LazyModule:
        """pandas, imported on first use: a sync that finds nothing new never needs it (start-up stays fast)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(import_module("pandas"), name)

    pd = _LazyModule()


@dataclass(frozen=True)
class WriteResult:
    run_id: int
    points: int  # new or changed points written
    data_version: int


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """Typed access to the tables in ``db.schema``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name
        self._key_cache: dict[str, int] = {}

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, url: str | None = None, *, create: bool = True) -> Store:
        """Open the store at ``url`` (``--db``/``$ENTROPY_DASH_DB``/default); migrate it when ``create``."""
        engine = make_engine(url)
        _check_reachable(engine)
        _check_not_newer(engine)
        if create:
            _check_writable(cls(engine))
            before = current_revision(engine)
            upgrade(engine)
            if before in LOD_LESS_REVISIONS:  # written before the downsampled levels existed: fill them once
                store = cls(engine)
                store.rebuild_lod()
                return store
        elif not is_initialised(engine):
            raise StoreError(
                f"no entropy-dash database at {engine.url.render_as_string(hide_password=True)}: "
                "run `entropy-dash init` (or an ingest) first"
            )
        else:
            have, want = current_revision(engine), head_revision()
            if have != want:
                raise StoreError(
                    f"the store at {engine.url.render_as_string(hide_password=True)} has schema revision {have}, "
                    f"this version of entropy-dash needs {want}: run `entropy-dash init` (with a role that may "
                    "alter the schema) to upgrade it"
                )
        return cls(engine)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def is_writable(self) -> bool:
        """Whether this connection may write (ingest, analyses): PostgreSQL — the role may INSERT into
        metric_points and its sessions are not read-only; SQLite — the URL is not ``mode=ro`` and the file and
        its folder (for the WAL files) are writable."""
        if self._dialect == "postgresql":
            with self.engine.connect() as conn:
                return bool(conn.exec_driver_sql(
                    "SELECT has_table_privilege(current_user, 'metric_points', 'INSERT') "
                    "AND current_setting('transaction_read_only') = 'off'").scalar())
        url = self.engine.url
        if str(url.query.get("mode", "")) == "ro" or "mode=ro" in str(url.database or ""):
            return False
        path = url.database or ""
        if path in ("", ":memory:") or path.startswith("file::memory:"):
            return True
        path = path.removeprefix("file:").split("?", 1)[0]
        folder = os.path.dirname(os.path.abspath(path))
        return os.access(folder, os.W_OK) and (not os.path.exists(path) or os.access(path, os.W_OK))

    def _insert(self, table: Any) -> Any:
        # the dialect's own insert (for its upsert), imported for the backend in use only
        dialect = import_module(f"sqlalchemy.dialects.{'postgresql' if self._dialect == 'postgresql' else 'sqlite'}")
        return dialect.insert(table)

    def _writer(self) -> Connection:
        return self.engine.connect().execution_options(writer=True)

    # ---------------------------------------------------------------- sources and runs
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

    def key_ids(self, roles: Mapping[str, str], conn: Connection | None = None) -> dict[str, int]:
        """Ids of metric keys (created with their role when new; a known key keeps its role)."""
        missing = [k for k in roles if k not in self._key_cache]
        if missing:
            if conn is None:
                with self._writer() as c, c.begin():
                    self._create_keys(c, {k: roles[k] for k in missing})
            else:
                self._create_keys(conn, {k: roles[k] for k in missing})
        return {k: self._key_cache[k] for k in roles}

    def _create_keys(self, conn: Connection, roles: Mapping[str, str]) -> None:
        rows = [{"name": k, "role": r} for k, r in roles.items()]
        conn.execute(self._insert(t.metric_keys).on_conflict_do_nothing(index_elements=["name"]), rows)
        found = conn.execute(
            select(t.metric_keys.c.name, t.metric_keys.c.id).where(t.metric_keys.c.name.in_(list(roles)))
        )
        self._key_cache.update({name: int(i) for name, i in found})

    def set_key_role(self, name: str, role: str) -> None:
        with self._writer() as conn, conn.begin():
            conn.execute(update(t.metric_keys).where(t.metric_keys.c.name == name).values(role=role))

    # ---------------------------------------------------------------- writing points
    def write_run(self, source_id: int, data: RunData, roles: Mapping[str, str]) -> WriteResult:
        """Upsert one run and its points in one transaction; only new or changed points are written.

        ``roles`` maps every key in ``data.series`` to its role (used only when the key is new).
        ``data.file_states`` (file sources) are saved in the same transaction: an offset never moves past
        points that were not written. Names and keys over the limits of ``db.limits`` are a ``RecordError``.
        """
        return self.write_runs(source_id, [(data, roles)])[0]

    def write_runs(self, source_id: int, items: Sequence[tuple[RunData, Mapping[str, str]]]) -> list[WriteResult]:
        """``write_run`` of many runs in one transaction (all of them land, or none): what a sync of many
        small runs needs (a transaction per run costs more than a tiny run's points). The runs' rows are
        upserted by one statement; the points of runs new to the store are inserted in bulk (``COPY`` on
        PostgreSQL) with their downsampled levels computed from them, with no read of the store; runs
        stored before go through ``write_run``'s read-compare-upsert. File states are saved with them."""
        for data, _ in items:
            limits.check_run(data)
        out: list[WriteResult] = []
        with self._writer() as conn, conn.begin():
            segment: list[tuple[RunData, Mapping[str, str]]] = []
            exts: set[str] = set()
            for item in items:  # a run twice in one batch: the second sees the first's points
                ext = limits.external_id(item[0].run.external_id)
                if ext in exts:
                    out += self._write_segment(conn, source_id, segment)
                    segment, exts = [], set()
                segment.append(item)
                exts.add(ext)
            if segment:
                out += self._write_segment(conn, source_id, segment)
            states = [st for data, _ in items for st in data.file_states]
            if states:
                self._save_file_states(conn, source_id, states)
        return out

    def _write_segment(self, conn: Connection, source_id: int,
                       items: Sequence[tuple[RunData, Mapping[str, str]]]) -> list[WriteResult]:
        exts = [limits.external_id(d.run.external_id) for d, _ in items]
        stored = self._stored_runs(conn, source_id, exts)
        ids = self._upsert_runs(conn, source_id, items, exts, stored)
        # every key the source saw gets its row and role (analysis tells recognised from unrecognised keys by
        # it, fetched or not)
        roles: dict[str, str] = {}
        for data, r in items:
            for k in (*data.all_keys(), *(s.key for s in data.series)):
                roles.setdefault(k, r.get(k, "other"))
        kid = self.key_ids(roles, conn)
        # a run another writer stored since the look-up above (the upsert waited for its commit) is not new
        fresh = [ids[e][0] for e in exts if e not in stored]
        taken = self._runs_with_points(conn, fresh) if fresh else set()
        results, bumps, marks = [], [], []
        bulk: list[np.ndarray] = []
        lod_rows: list[tuple] = []
        for (data, _), ext in zip(items, exts, strict=True):
            run_id, version = ids[ext]
            series = [s for s in data.series if len(s)]
            written = 0
            if series:
                for s in series:
                    marks.append((run_id, kid[s.key], int(s.steps[-1])))
                if ext in stored or run_id in taken or len({s.key for s in series}) < len(series):
                    written = self._write_points(conn, run_id, series, kid)
                else:  # new to the store: every point is new, its levels come from these points
                    written = sum(len(s) for s in series)
                    for s in series:
                        pts = np.column_stack([s.steps.astype(np.float64), s.values, s.wall_times])
                        bulk.append(np.column_stack([np.full(len(s), run_id, np.float64),
                                                     np.full(len(s), kid[s.key], np.float64), pts]))
                        levels = lod.levels_for(int(s.steps[0]), int(s.steps[-1]))
                        if levels:
                            for level, sel in lod.reduce_cascade(lod.finite_sorted(pts), levels).items():
                                lod_rows += _lod_rows(run_id, kid[s.key], level, sel)
            if written:
                version += 1
                bumps.append((version, run_id))
            results.append(WriteResult(run_id=run_id, points=written, data_version=version))
        if bulk:
            self._insert_new_points(conn, np.concatenate(bulk))
        mark = "?" if self._dialect == "sqlite" else "%s"
        for lo_i in range(0, len(lod_rows), POINT_BATCH):
            conn.exec_driver_sql(f"INSERT INTO metric_lod (run_id, key_id, level, step, value, wall_time) VALUES "
                                 f"({', '.join([mark] * 6)})", lod_rows[lo_i:lo_i + POINT_BATCH])
        self._advance_watermarks(conn, marks)
        if bumps:
            conn.exec_driver_sql(f"UPDATE runs SET data_version = {mark} WHERE id = {mark}", bumps)
        return results

    def _write_points(self, conn: Connection, run_id: int, series: Sequence[Any], kid: Mapping[str, int]) -> int:
        """Points of a run the store has seen: only new or changed ones are written, with their levels."""
        new = pd.concat([pd.DataFrame({"key_id": kid[s.key], "step": s.steps, "value": s.values,
                                       "wall_time": s.wall_times}) for s in series], ignore_index=True)
        changed = self._changed_points(conn, run_id, new)
        self._upsert_points(conn, run_id, changed)
        self._refresh_lod(conn, run_id, changed)
        return len(changed)

    def _runs_with_points(self, conn: Connection, run_ids: Sequence[int]) -> set[int]:
        found: set[int] = set()
        for lo_i in range(0, len(run_ids), 500):
            part = ", ".join(str(int(i)) for i in run_ids[lo_i:lo_i + 500])
            found.update(int(i) for i in conn.exec_driver_sql(
                f"SELECT DISTINCT run_id FROM metric_points WHERE run_id IN ({part})").scalars())
        return found

    def _stored_runs(self, conn: Connection, source_id: int, exts: Sequence[str]) -> dict[str, tuple]:
        """{external_id: (id, data_version, keys_seen, notes)} of those of ``exts`` the store has."""
        r = t.runs
        out: dict[str, tuple] = {}
        for lo_i in range(0, len(exts), 500):
            rows = conn.execute(select(r.c.external_id, r.c.id, r.c.data_version, r.c.keys_seen, r.c.notes).where(
                r.c.source_id == source_id, r.c.external_id.in_(list(exts[lo_i:lo_i + 500]))))
            out.update({row[0]: tuple(row[1:]) for row in rows})
        return out

    def _upsert_runs(self, conn: Connection, source_id: int, items: Sequence[tuple[RunData, Mapping[str, str]]],
                     exts: Sequence[str], stored: Mapping[str, tuple]) -> dict[str, tuple[int, int]]:
        """Upsert the runs' rows (one executemany) → {external_id: (run id, data version)}."""
        cut = limits.RUN_COLUMN_CHARS
        rows = []
        for (data, _), ext in zip(items, exts, strict=True):
            info = data.run
            keys_seen, notes = sorted(data.all_keys()), list(data.notes)
            if data.partial and ext in stored:  # a tail read saw only some keys: merge with what was stored
                keys_seen = sorted({*(stored[ext][2] or []), *keys_seen})
                notes = [*(stored[ext][3] or []), *notes]
            rows.append({
                "source_id": source_id, "external_id": ext, "keys_seen": keys_seen, "notes": limits.notes(notes),
                "project": limits.text_column(info.project, cut["project"]), "name": info.name,
                "status": limits.text_column(info.status, cut["status"]),
                "params": limits.clean_json(json_safe(info.params)), "tags": limits.clean_json(json_safe(info.tags)),
                "model": limits.text_column(info.model, cut["model"]),
                "algorithm": limits.text_column(info.algorithm, cut["algorithm"]),
                "started_at": info.started_at, "updated_at": info.updated_at, "state": info.state,
                **_planned(info, cut["planned_from"]),
            })
        stmt = self._insert(t.runs)
        cols = [c for c in rows[0] if c not in ("source_id", "external_id")]
        conn.execute(stmt.on_conflict_do_update(index_elements=["source_id", "external_id"],
                                                set_={c: getattr(stmt.excluded, c) for c in cols}), rows)
        have = self._stored_runs(conn, source_id, exts) if any(e not in stored for e in exts) else stored
        return {e: (int(have[e][0]), int(have[e][1])) for e in exts}

    def _insert_new_points(self, conn: Connection, rows: np.ndarray) -> None:
        """Rows (run_id, key_id, step, value, wall_time) of runs new to the store, NaN/±inf stored as NULL:
        ``COPY`` on PostgreSQL, one executemany on SQLite."""
        mp = t.metric_points.name
        if self._dialect == "postgresql":
            frame = pd.DataFrame({"run_id": rows[:, 0].astype(np.int64), "key_id": rows[:, 1].astype(np.int64),
                                  "step": rows[:, 2].astype(np.int64),
                                  "value": np.where(np.isfinite(rows[:, 3]), rows[:, 3], np.nan),
                                  "wall_time": np.where(np.isfinite(rows[:, 4]), rows[:, 4], np.nan)})
            text = frame.to_csv(sep="\t", header=False, index=False, na_rep="\\N", float_format="%.17g")
            cur = conn.connection.dbapi_connection.cursor()
            try:
                with cur.copy(f"COPY {mp} (run_id, key_id, step, value, wall_time) FROM STDIN") as copy:
                    copy.write(text)
            finally:
                cur.close()
            return
        run = rows[:, 0].astype(np.int64).tolist()
        key = rows[:, 1].astype(np.int64).tolist()
        step = rows[:, 2].astype(np.int64).tolist()
        value, wall = _nullable(rows[:, 3]), _nullable(rows[:, 4])
        sql = f"INSERT INTO {mp} (run_id, key_id, step, value, wall_time) VALUES (?, ?, ?, ?, ?)"
        for lo_i in range(0, len(run), POINT_BATCH * 20):
            hi = lo_i + POINT_BATCH * 20
            conn.exec_driver_sql(sql, list(zip(run[lo_i:hi], key[lo_i:hi], step[lo_i:hi], value[lo_i:hi],
                                               wall[lo_i:hi], strict=True)))

    def _changed_points(self, conn: Connection, run_id: int, new: pd.DataFrame) -> pd.DataFrame:
        """Rows of ``new`` that are not already stored with the same value and wall time. The stored rows
        come through the driver as plain tuples; a run with none stored (a new run) returns ``new`` as is."""
        new = new.copy()
        new.loc[~np.isfinite(new["value"].to_numpy(dtype=np.float64)), "value"] = np.nan  # stored as NULL
        key_ids = [int(k) for k in new["key_id"].unique()]
        mark = "?" if self._dialect == "sqlite" else "%s"
        cur = conn.connection.dbapi_connection.cursor()  # inside this transaction; rows as tuples
        try:
            cur.execute(f"SELECT key_id, step, value, wall_time FROM {t.metric_points.name} WHERE run_id = {mark} "
                        f"AND key_id IN ({', '.join([mark] * len(key_ids))}) AND step >= {mark}",
                        (int(run_id), *key_ids, int(new["step"].min())))
            rows = cur.fetchall()
        finally:
            cur.close()
        if not rows:
            return new
        arr = np.array(rows, dtype=np.float64).reshape(-1, 4)  # NULL → NaN
        old = pd.DataFrame({"key_id": arr[:, 0].astype(np.int64), "step": np.array([r[1] for r in rows], np.int64),
                            "value": arr[:, 2], "wall_time": arr[:, 3]})
        merged = new.merge(old, on=["key_id", "step"], how="left", suffixes=("", "_old"), indicator=True)
        same_value = (merged["value"] == merged["value_old"]) | (merged["value"].isna() & merged["value_old"].isna())
        same_wall = (merged["wall_time"] == merged["wall_time_old"]) | (
            merged["wall_time"].isna() & merged["wall_time_old"].isna()
        )
        keep = (merged["_merge"] == "left_only") | ~(same_value & same_wall)
        return new[keep.to_numpy()]

    def _upsert_points(self, conn: Connection, run_id: int, points: pd.DataFrame) -> None:
        """INSERT … ON CONFLICT DO UPDATE of plain tuples through the driver's executemany (the same
        statement on SQLite and PostgreSQL); non-finite values and wall times become NULL."""
        if points.empty:
            return
        mp = t.metric_points
        mark = "?" if self._dialect == "sqlite" else "%s"
        sql = (f"INSERT INTO {mp.name} (run_id, key_id, step, value, wall_time) VALUES ({', '.join([mark] * 5)}) "
               "ON CONFLICT (run_id, key_id, step) DO UPDATE SET value = excluded.value, wall_time = excluded.wall_time")
        n = len(points)
        key_id = points["key_id"].to_numpy(dtype=np.int64).tolist()
        step = points["step"].to_numpy(dtype=np.int64).tolist()
        value = _nullable(points["value"].to_numpy(dtype=np.float64))
        wall = _nullable(points["wall_time"].to_numpy(dtype=np.float64))
        run = [int(run_id)] * n
        for lo in range(0, n, POINT_BATCH):
            hi = lo + POINT_BATCH
            conn.exec_driver_sql(sql, list(zip(run[lo:hi], key_id[lo:hi], step[lo:hi], value[lo:hi], wall[lo:hi],
                                               strict=True)))

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

    # ---------------------------------------------------------------- downsampled levels (metric_lod)
    def _refresh_lod(self, conn: Connection, run_id: int, changed: pd.DataFrame) -> None:
        """Bring the levels of the (run, key) series whose points were just written (``changed``: key_id,
        step, value, wall_time) up to date, in the writer's transaction. Only the buckets holding the changed
        steps are recomputed, from the stored points in them; when a series gains or loses a level (it grew
        past a threshold, or it had no levels yet: a store written before levels existed) its levels are
        rebuilt from all its points. See ``db.lod``."""
        if changed.empty:
            return
        mark = "?" if self._dialect == "sqlite" else "%s"
        kids = sorted({int(k) for k in changed["key_id"].unique()})
        in_keys = ", ".join(str(k) for k in kids)
        one = f"FROM metric_points WHERE run_id = {mark} AND key_id = {mark}"
        span = {}  # two index look-ups per series (min and max together would scan it on SQLite)
        for kid in kids:
            lo, hi = conn.exec_driver_sql(f"SELECT (SELECT min(step) {one}), (SELECT max(step) {one})",
                                          (int(run_id), kid, int(run_id), kid)).one()
            if lo is not None:
                span[kid] = (int(lo), int(hi))
        old: dict[int, set[int]] = {}
        for k, level in conn.exec_driver_sql(
                f"SELECT DISTINCT key_id, level FROM metric_lod WHERE run_id = {mark} AND key_id IN ({in_keys})",
                (int(run_id),)).all():
            old.setdefault(int(k), set()).add(int(level))
        deletes: list[tuple] = []
        rows: list[tuple] = []
        by_key = {int(k): part for k, part in changed.groupby("key_id")}
        for kid in kids:
            levels = lod.levels_for(*span[kid]) if kid in span else []
            had = old.get(kid, set())
            if not levels and not had:
                continue
            part = by_key[kid]
            mine = part[["step", "value", "wall_time"]].to_numpy(dtype=float)
            whole = had == set() and len(part) == part["step"].nunique()  # a new series: these are its points
            if set(levels) != had:  # rebuild every level of this series
                pts = mine if whole and self._only_points(conn, run_id, kid, len(part)) \
                    else self._lod_source(conn, run_id, kid, None, None)
                deletes.append((int(run_id), kid, 0, lod.MAX_LEVEL, -(2**62), 2**62))
                for level, sel in lod.reduce_cascade(lod.finite_sorted(pts), levels).items():
                    rows += _lod_rows(run_id, kid, level, sel)
                continue
            lo, hi = int(part["step"].min()), int(part["step"].max())
            a, b = lod.bucket_range(lo, hi, max(levels))  # the widest range: every level's buckets are in it
            pts = lod.finite_sorted(self._lod_source(conn, run_id, kid, a, b))
            for level in levels:
                la, lb = lod.bucket_range(lo, hi, level)
                inside = pts[(pts[:, 0] >= la) & (pts[:, 0] <= lb)]
                deletes.append((int(run_id), kid, level, level, la, lb))
                rows += _lod_rows(run_id, kid, level, lod.reduce_level(inside, level))
        if deletes:
            conn.exec_driver_sql(
                f"DELETE FROM metric_lod WHERE run_id = {mark} AND key_id = {mark} AND level BETWEEN {mark} AND "
                f"{mark} AND step BETWEEN {mark} AND {mark}", deletes)
        for lo_i in range(0, len(rows), POINT_BATCH):
            conn.exec_driver_sql(
                f"INSERT INTO metric_lod (run_id, key_id, level, step, value, wall_time) VALUES "
                f"({', '.join([mark] * 6)})", rows[lo_i:lo_i + POINT_BATCH])

    def _only_points(self, conn: Connection, run_id: int, key_id: int, n: int) -> bool:
        """Whether the series stores exactly ``n`` points (then the ``n`` just written are all of them)."""
        mark = "?" if self._dialect == "sqlite" else "%s"
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM metric_points WHERE run_id = {mark} AND key_id = "
                                        f"{mark}", (int(run_id), int(key_id))).scalar_one()) == n

    def _lod_source(self, conn: Connection, run_id: int, key_id: int, lo: int | None, hi: int | None) -> np.ndarray:
        """Stored points (step, value, wall_time) of one series, optionally only steps lo…hi."""
        mark = "?" if self._dialect == "sqlite" else "%s"
        sql = f"SELECT step, value, wall_time FROM metric_points WHERE run_id = {mark} AND key_id = {mark}"
        params: tuple = (int(run_id), int(key_id))
        if lo is not None:
            sql += f" AND step BETWEEN {mark} AND {mark}"
            params += (int(lo), int(hi))
        rows = [tuple(r) for r in conn.exec_driver_sql(sql + " ORDER BY step", params)]
        return np.array(rows, dtype=float).reshape(-1, 3)

    def rebuild_lod(self, run_ids: Sequence[int] | None = None) -> int:
        """Recompute every level of the given runs (default: all) from their stored points, one transaction
        per run; for stores written before levels existed (ingest keeps them up to date afterwards). Returns
        the number of level rows written."""
        with self.engine.connect() as conn:
            todo = [int(i) for i in conn.execute(select(t.runs.c.id).order_by(t.runs.c.id)).scalars()]
        if run_ids is not None:
            wanted = {int(i) for i in run_ids}
            todo = [i for i in todo if i in wanted]
        mark = "?" if self._dialect == "sqlite" else "%s"
        total = 0
        for run_id in todo:
            with self._writer() as conn, conn.begin():
                conn.exec_driver_sql(f"DELETE FROM metric_lod WHERE run_id = {mark}", (run_id,))
                kids = [int(k) for k in conn.exec_driver_sql(
                    f"SELECT DISTINCT key_id FROM metric_points WHERE run_id = {mark}", (run_id,)).scalars()]
                rows: list[tuple] = []
                for kid in kids:
                    pts = self._lod_source(conn, run_id, kid, None, None)
                    if not pts.size:
                        continue
                    levels = lod.levels_for(int(pts[:, 0].min()), int(pts[:, 0].max()))
                    for level, sel in lod.reduce_cascade(lod.finite_sorted(pts), levels).items():
                        rows += _lod_rows(run_id, kid, level, sel)
                for lo_i in range(0, len(rows), POINT_BATCH):
                    conn.exec_driver_sql(
                        f"INSERT INTO metric_lod (run_id, key_id, level, step, value, wall_time) VALUES "
                        f"({', '.join([mark] * 6)})", rows[lo_i:lo_i + POINT_BATCH])
                total += len(rows)
        return total

    def lod_levels(self, run_ids: Iterable[int], keys: Iterable[str]) -> pd.DataFrame:
        """Stored levels of the given runs' series: one row per (run_id, key, level) with its row count ``n``."""
        ids = [int(i) for i in run_ids]
        names = list(keys)
        kid = self.key_ids_known(names)
        if not ids or not kid:
            return pd.DataFrame({"run_id": [], "key": [], "level": [], "n": []})
        q = (select(t.metric_lod.c.run_id, t.metric_lod.c.key_id, t.metric_lod.c.level, func.count().label("n"))
             .where(t.metric_lod.c.run_id.in_(ids), t.metric_lod.c.key_id.in_(list(kid.values())))
             .group_by(t.metric_lod.c.run_id, t.metric_lod.c.key_id, t.metric_lod.c.level))
        df = self._frame(q)
        names_by_id = {v: k for k, v in kid.items()}
        df["key"] = [names_by_id[int(k)] for k in df["key_id"]] if not df.empty else []
        return df[["run_id", "key", "level", "n"]]

    def lod_points(self, run_id: int, key: str, level: int) -> np.ndarray:
        """The rows of one level of a series as an (n, 3) float array — step, value, wall time (NaN where
        unknown) — sorted by step; empty when the series has no such level."""
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        return self._fetch_array(
            f"SELECT l.step, l.value, l.wall_time FROM metric_lod l JOIN metric_keys k ON k.id = l.key_id "
            f"WHERE l.run_id = {mark} AND k.name = {mark} AND l.level = {mark} ORDER BY l.step",
            (int(run_id), str(key), int(level)))

    def step_spans(self, run_ids: Iterable[int], keys: Iterable[str]) -> pd.DataFrame:
        """First and last stored step of each (run_id, key) series that exists: two index look-ups per series
        (a grouped min/max would read every point)."""
        ids = [int(i) for i in run_ids]
        kid = self.key_ids_known(list(keys))
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        one = f"FROM metric_points WHERE run_id = {mark} AND key_id = {mark}"
        sql = f"SELECT (SELECT min(step) {one}), (SELECT max(step) {one})"
        rows = []
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            for run_id in ids:
                for key, k in kid.items():
                    cur.execute(sql, (run_id, k, run_id, k))
                    lo, hi = cur.fetchone()
                    if lo is not None:
                        rows.append((run_id, key, int(lo), int(hi)))
            cur.close()
        finally:
            raw.close()
        return pd.DataFrame(rows, columns=["run_id", "key", "first_step", "last_step"])

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

    # ---------------------------------------------------------------- sync log
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

    # ---------------------------------------------------------------- file tailing
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

    # ---------------------------------------------------------------- reads
    def runs_frame(self, run_ids: Sequence[int] | None = None) -> pd.DataFrame:
        """One row per run with its source: id, source_id, kind, uri, external_id, name, project, …"""
        q = (
            select(t.runs, t.sources.c.kind.label("source_kind"), t.sources.c.uri.label("source_uri"))
            .join(t.sources, t.sources.c.id == t.runs.c.source_id)
            .order_by(t.runs.c.id)
        )
        if run_ids is not None:
            q = q.where(t.runs.c.id.in_([int(i) for i in run_ids]))
        return _masked(self._frame(q), "source_uri")

    def runs_page(self, *, projects: Sequence[str] = (), models: Sequence[str] = (),
                  algorithms: Sequence[str] = (), tags: Sequence[str] = (), search: str = "",
                  offset: int = 0, limit: int = 50) -> tuple[int, pd.DataFrame]:
        """One page of runs matching every given filter, filtered and paged in SQL: (how many runs match,
        ``runs_frame`` rows of runs ``offset … offset + limit − 1`` of them, by id). Filters: any of the
        projects/models/algorithms; every one of ``tags`` (``key=value``); ``search`` a case-insensitive
        substring of the run name (plain text: ``%`` and ``_`` match themselves)."""
        r = t.runs
        cond = []
        for col, wanted in ((r.c.project, projects), (r.c.model, models), (r.c.algorithm, algorithms)):
            if wanted:
                cond.append(col.in_([str(w) for w in wanted]))
        for tag in tags:
            key, _, value = str(tag).partition("=")
            cond.append(r.c.tags[key].as_string() == value)
        needle = search.strip().lower()
        if needle:
            esc = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            cond.append(func.lower(r.c.name).like(f"%{esc}%", escape="\\"))
        where = and_(*cond) if cond else None
        count = select(func.count()).select_from(r)
        q = (select(r, t.sources.c.kind.label("source_kind"), t.sources.c.uri.label("source_uri"))
             .join(t.sources, t.sources.c.id == r.c.source_id).order_by(r.c.id)
             .offset(max(int(offset), 0)).limit(max(int(limit), 0)))
        if where is not None:
            count, q = count.where(where), q.where(where)
        with self.engine.connect() as conn:
            total = int(conn.execute(count).scalar_one())
        return total, _masked(self._frame(q), "source_uri")

    def run_filter_values(self) -> dict[str, list[str]]:
        """What the runs can be filtered by: distinct projects, models and algorithms (in SQL), and every
        ``key=value`` tag (from the tags column only; MLflow's own ``mlflow.*`` tags left out)."""
        r = t.runs
        out: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for name, col in (("project", r.c.project), ("model", r.c.model), ("algorithm", r.c.algorithm)):
                out[name] = sorted(str(v) for v in conn.execute(select(col).distinct().where(col.is_not(None)))
                                   .scalars())
            tags = {f"{k}={v}" for (tg,) in conn.execute(select(r.c.tags))
                    for k, v in (tg or {}).items() if not str(k).startswith("mlflow.")}
        out["tags"] = sorted(tags)
        return out

    def run_names(self) -> dict[int, str]:
        """{run id: name} of every run (two columns, for pickers)."""
        with self.engine.connect() as conn:
            return {int(i): str(n) for i, n in conn.execute(select(t.runs.c.id, t.runs.c.name).order_by(t.runs.c.id))}

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

    def run_keys(self, run_ids: Sequence[int] | None = None) -> pd.DataFrame:
        """Per run and key: role, points, non-finite points, first and last step."""
        mp = t.metric_points
        q = (
            select(
                mp.c.run_id,
                t.metric_keys.c.name.label("key"),
                t.metric_keys.c.role,
                func.count().label("n"),
                func.count(mp.c.value).label("n_finite"),
                func.min(mp.c.step).label("first_step"),
                func.max(mp.c.step).label("last_step"),
            )
            .join(t.metric_keys, t.metric_keys.c.id == mp.c.key_id)
            .group_by(mp.c.run_id, t.metric_keys.c.name, t.metric_keys.c.role)
            .order_by(mp.c.run_id, t.metric_keys.c.name)
        )
        if run_ids is not None:
            q = q.where(mp.c.run_id.in_([int(i) for i in run_ids]))
        df = self._frame(q)
        df["n_nonfinite"] = df["n"] - df["n_finite"]
        return df

    def series(self, run_ids: Iterable[int], keys: Iterable[str] | None = None) -> pd.DataFrame:
        """Long frame (run_id, key, step, value, wall_time) sorted by run, key, step; NaN for non-finite."""
        mp = t.metric_points
        q = (
            select(mp.c.run_id, t.metric_keys.c.name.label("key"), mp.c.step, mp.c.value, mp.c.wall_time)
            .join(t.metric_keys, t.metric_keys.c.id == mp.c.key_id)
            .where(mp.c.run_id.in_([int(i) for i in run_ids]))
            .order_by(mp.c.run_id, t.metric_keys.c.name, mp.c.step)
        )
        if keys is not None:
            q = q.where(t.metric_keys.c.name.in_(list(keys)))
        df = self._frame(q)
        return df.astype({"value": "float64", "wall_time": "float64"}) if not df.empty else df

    def points(self, run_id: int, key: str) -> np.ndarray:
        """Every stored point of one run's metric as an (n, 3) float array — step, value (NaN where the
        source had a non-finite value), wall time (NaN where unknown) — sorted by step. The fast path for
        drawing: a plain DB-API cursor straight into numpy (about 20 ms for 20,000 points)."""
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        return self._fetch_array(
            f"SELECT p.step, p.value, p.wall_time FROM metric_points p JOIN metric_keys k ON k.id = p.key_id "
            f"WHERE p.run_id = {mark} AND k.name = {mark} ORDER BY p.step", (int(run_id), str(key)))

    def _fetch_array(self, sql: str, params: tuple) -> np.ndarray:
        """Rows of a three-column query through a plain DB-API cursor as an (n, 3) float array (None → NaN)."""
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(sql, params)
            rows = cur.fetchall()
            cur.close()
        finally:
            raw.close()
        return np.array(rows, dtype=float).reshape(-1, 3)

    def key_roles(self, names: Sequence[str] | None = None) -> dict[str, str]:
        """Stored role of each metric key (of ``names``, or all)."""
        q = select(t.metric_keys.c.name, t.metric_keys.c.role)
        if names is not None:
            q = q.where(t.metric_keys.c.name.in_(list(names)))
        with self.engine.connect() as conn:
            return {name: role for name, role in conn.execute(q)}

    def key_ids_known(self, names: Sequence[str]) -> dict[str, int]:
        """Ids of the given metric keys that exist (nothing is created)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.metric_keys.c.name, t.metric_keys.c.id)
                                .where(t.metric_keys.c.name.in_(list(names))))
            return {name: int(i) for name, i in rows}

    def count_points(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.metric_points)).scalar_one())

    def data_version(self) -> tuple[int, int, str]:
        """Changes whenever points or analyses change: the cache key of the dashboard."""
        with self.engine.connect() as conn:
            versions = conn.execute(
                select(func.coalesce(func.sum(t.runs.c.data_version), 0), func.count()).select_from(t.runs)
            ).one()
            last = conn.execute(select(func.max(t.analyses.c.computed_at))).scalar_one()
        return int(versions[0]), int(versions[1]), str(last)

    # ---------------------------------------------------------------- analyses
    def save_analysis(
        self,
        run_id: int,
        kind: str,
        data_version: int,
        result: Mapping[str, Any],
        columns: Mapping[str, Any] | None = None,
    ) -> None:
        self.save_analyses([(run_id, kind, data_version, result, columns or {})])

    def save_analyses(self, items: Sequence[tuple[int, str, int, Mapping[str, Any], Mapping[str, Any]]]) -> None:
        """Upsert analyses rows (run_id, kind, data_version, result, key columns) in one transaction; numeric
        columns are stored as plain numbers (None for non-finite), text columns as given."""
        if not items:
            return
        with self._writer() as conn, conn.begin():
            for run_id, kind, data_version, result, columns in items:
                cols = {k: (v if isinstance(v, str) else _num(v)) for k, v in columns.items()}
                values = {"computed_at": _now(), "data_version": data_version, "result": json_safe(result), **cols}
                ins = self._insert(t.analyses).values(run_id=run_id, kind=kind, **values)
                conn.execute(ins.on_conflict_do_update(index_elements=["run_id", "kind"], set_=values))

    def analyses_frame(self, kind: str | None = None, run_ids: Sequence[int] | None = None) -> pd.DataFrame:
        q = select(t.analyses).order_by(t.analyses.c.run_id)
        if kind is not None:
            q = q.where(t.analyses.c.kind == kind)
        if run_ids is not None:
            q = q.where(t.analyses.c.run_id.in_([int(i) for i in run_ids]))
        return self._frame(q)

    def stale_runs(self, kind: str, analysis_version: int) -> list[int]:
        """Runs whose analysis of ``kind`` is missing, older than their points, or made by another version of
        the analysis code."""
        a = t.analyses
        q = (
            select(t.runs.c.id)
            .join(a, and_(a.c.run_id == t.runs.c.id, a.c.kind == kind), isouter=True)
            .where((a.c.id.is_(None)) | (a.c.data_version != t.runs.c.data_version)
                   | (a.c.analysis_version != analysis_version))
            .order_by(t.runs.c.id)
        )
        with self.engine.connect() as conn:
            return [int(r) for r in conn.execute(q).scalars()]

    def analyses_fingerprint(self, kind: str) -> str:
        """Changes whenever an analysis of ``kind`` is written or removed (what cross-run results depend on)."""
        a = t.analyses
        with self.engine.connect() as conn:
            n, last, ids = conn.execute(select(func.count(), func.max(a.c.computed_at), func.sum(a.c.run_id))
                                        .where(a.c.kind == kind)).one()
        return f"{int(n)}:{int(ids or 0)}:{last}"

    # ---------------------------------------------------------------- cross-run results
    def save_cross_run(self, kind: str, analysis_version: int, inputs: str, result: Mapping[str, Any]) -> None:
        """Upsert the cross-run result of ``kind`` with the fingerprint of its inputs."""
        values = {"analysis_version": analysis_version, "inputs": inputs, "computed_at": _now(),
                  "result": json_safe(result)}
        with self._writer() as conn, conn.begin():
            ins = self._insert(t.cross_run).values(kind=kind, **values)
            conn.execute(ins.on_conflict_do_update(index_elements=["kind"], set_=values))

    def cross_run(self, kind: str) -> tuple[int, str, dict[str, Any]] | None:
        """(analysis version, inputs fingerprint, result) of the stored cross-run result, None when absent."""
        c = t.cross_run
        with self.engine.connect() as conn:
            row = conn.execute(select(c.c.analysis_version, c.c.inputs, c.c.result).where(c.c.kind == kind)).first()
        return None if row is None else (int(row[0]), str(row[1]), dict(row[2]))

    # ---------------------------------------------------------------- helpers
    def _frame(self, query: Any) -> pd.DataFrame:
        try:
            with self.engine.connect() as conn:
                result = conn.execute(query)
                # plain tuples: pandas builds a frame from Row objects about ten times slower
                return pd.DataFrame.from_records([tuple(r) for r in result.all()], columns=list(result.keys()))
        except OperationalError as exc:
            raise StoreError(f"cannot read the store at {self.url}: {mask_secrets(str(exc.orig))}") from exc
        except SQLAlchemyError as exc:  # pragma: no cover - unexpected driver errors keep their type
            raise StoreError(f"store error at {self.url}: {mask_secrets(str(exc))}") from exc


def _masked(df: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Text columns with any URL password masked (rows written before URIs were stored masked)."""
    for col in columns:
        if col in df and len(df):
            df[col] = [mask_secrets(v, ()) if isinstance(v, str) else v for v in df[col]]
    return df


def _planned(info: RunInfo, cut: int) -> dict[str, Any]:
    """The run's planned length as the source set it, else as its params state it."""
    steps, origin = (info.planned_steps, info.planned_from) if info.planned_steps else planned_length(info.params)
    return {"planned_steps": steps, "planned_from": limits.text_column(origin, cut)}


def _check_not_newer(engine: Engine) -> None:
    """A store whose schema revision this version does not know was written by a newer one: it is neither
    read (its tables may mean something else) nor migrated (alembic cannot go from an unknown revision)."""
    have = current_revision(engine)
    if have is not None and have not in known_revisions():
        raise StoreTooNew(f"the store at {engine.url.render_as_string(hide_password=True)} was written by a newer "
                          f"entropy-dash (schema revision {have}; this one knows up to {head_revision()}): upgrade "
                          "entropy-dash to use it (nothing was changed)")


def _check_writable(store: Store) -> None:
    """A writing command on a store opened read-only (``?mode=ro``, a read-only file) is refused before it
    starts (PostgreSQL roles are checked on their first write: the tables may not exist yet)."""
    if store._dialect != "sqlite" or store.is_writable():
        return
    why = ("the URL says ?mode=ro" if "mode=ro" in str(store.engine.url)
           else "the file or its folder is not writable by this user")
    path = (store.engine.url.database or "").removeprefix("file:").split("?", 1)[0]
    raise StoreReadOnly(f"the store {path} is read-only here ({why}) and this command writes to it: "
                        "drop ?mode=ro, make the file writable, or give another --db (read commands work as is)")


def _check_reachable(engine: Engine) -> None:
    """Connect once: an unreachable server, a file that is no SQLite database or a folder that does not exist
    is a one-line ``StoreError`` naming it (instead of 'no database … run init' or a traceback)."""
    url = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("SELECT count(*) FROM sqlite_master")
    except DBAPIError as exc:
        reason = limits.one_line(str(exc.orig), 300)
        if engine.dialect.name == "sqlite":
            path = (engine.url.database or ":memory:").removeprefix("file:").split("?", 1)[0]
            if "mode=ro" in str(engine.url) and not os.path.exists(path):
                raise StoreError(f"no store at {path}: it was opened read-only (?mode=ro), so it is not created; "
                                 "run `entropy-dash init` without ?mode=ro first") from None
            if "not a database" in reason or "malformed" in reason:
                raise StoreError(f"{path} is not an SQLite database ({reason}): give another --db file") from None
            raise StoreError(f"cannot open the SQLite database {path}: {reason} (does its folder exist, is it "
                             "writable?)") from None
        if "does not exist" in reason or "authentication" in reason or "password" in reason:
            raise StoreError(f"cannot connect to {url}: {reason}") from None
        raise StoreError(f"cannot reach the PostgreSQL server of {url} (is it running, is the address right?): "
                         f"{reason}") from None


def _path_hash(path: str) -> str:
    import hashlib

    return hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()


def _lod_rows(run_id: int, key_id: int, level: int, pts: np.ndarray) -> list[tuple]:
    """metric_lod rows of one level's points (step, value, wall_time; unknown wall times as NULL)."""
    n = pts.shape[0]
    return list(zip([int(run_id)] * n, [int(key_id)] * n, [int(level)] * n,
                    pts[:, 0].astype(np.int64).tolist(), pts[:, 1].tolist(), _nullable(pts[:, 2]), strict=True))


def _nullable(arr: np.ndarray) -> list[float | None]:
    """Floats as a list with None for NaN and ±inf (stored as NULL)."""
    return [v if v == v and v not in (math.inf, -math.inf) else None for v in arr.tolist()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _num(v: Any) -> float | int | None:
    """An analyses column: integers kept, other numbers finite floats or None."""
    if isinstance(v, np.integer | int) and not isinstance(v, bool):
        return int(v)
    return finite_number(v)
