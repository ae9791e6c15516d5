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
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, and_, func, select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from db import schema as t
from db.engine import make_engine
from db.errors import StoreError
from db.migrate import is_initialised, upgrade
from db.records import RunData

POINT_BATCH = 5_000


class _LazyPandas:
    """``pd``, imported on first use: a sync that finds nothing new never needs pandas (≈ 0.3 s of start-up)."""

    def __getattr__(self, name: str) -> Any:
        import pandas

        globals()["pd"] = pandas
        return getattr(pandas, name)


pd: Any = _LazyPandas()


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
        if create:
            upgrade(engine)
        elif not is_initialised(engine):
            raise StoreError(
                f"no entropy-dash database at {engine.url.render_as_string(hide_password=True)}: "
                "run `entropy-dash init` (or an ingest) first"
            )
        return cls(engine)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _insert(self, table: Any) -> Any:
        if self._dialect == "postgresql":  # imported here: SQLite stores never load the PostgreSQL dialect
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    def _writer(self) -> Connection:
        return self.engine.connect().execution_options(writer=True)

    # ---------------------------------------------------------------- sources and runs
    def source_id(self, kind: str, uri: str, options: Mapping[str, Any] | None = None) -> int:
        """Get or create the source row for (kind, uri). ``options`` are merged into the stored ones (a key
        given again replaces its value; keys not given are kept, so a plain re-ingest keeps the user's key
        choices)."""
        with self._writer() as conn, conn.begin():
            conn.execute(self._insert(t.sources).values(kind=kind, uri=uri, options=dict(options or {}),
                                                        created_at=_now())
                         .on_conflict_do_nothing(index_elements=["kind", "uri"]))
            sid, stored = conn.execute(
                select(t.sources.c.id, t.sources.c.options).where(t.sources.c.kind == kind, t.sources.c.uri == uri)
            ).one()
            merged = {**(stored or {}), **_jsonable(options or {})}
            if merged != (stored or {}):
                conn.execute(update(t.sources).where(t.sources.c.id == sid).values(options=merged))
            return int(sid)

    def run_ids_of_source(self, source_id: int) -> list[int]:
        with self.engine.connect() as conn:
            return [int(i) for i in conn.execute(select(t.runs.c.id).where(t.runs.c.source_id == source_id)
                                                 .order_by(t.runs.c.id)).scalars()]

    def sources_frame(self) -> pd.DataFrame:
        return self._frame(select(t.sources).order_by(t.sources.c.id))

    def _upsert_run(self, conn: Connection, source_id: int, data: RunData) -> tuple[int, int]:
        info = data.run
        values = {
            "keys_seen": sorted(data.all_keys()),
            "notes": list(data.notes),
            "project": info.project,
            "name": info.name,
            "status": info.status,
            "params": _jsonable(info.params),
            "tags": _jsonable(info.tags),
            "model": info.model,
            "algorithm": info.algorithm,
            "started_at": info.started_at,
            "updated_at": info.updated_at,
            "state": info.state,
            "planned_steps": info.planned_steps,
            "planned_from": info.planned_from,
        }
        stmt = self._insert(t.runs).values(source_id=source_id, external_id=info.external_id, **values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["source_id", "external_id"], set_=values))
        row = conn.execute(
            select(t.runs.c.id, t.runs.c.data_version).where(
                t.runs.c.source_id == source_id, t.runs.c.external_id == info.external_id
            )
        ).one()
        return int(row.id), int(row.data_version)

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
        """
        with self._writer() as conn, conn.begin():
            run_id, version = self._upsert_run(conn, source_id, data)
            ids = self.key_ids({s.key: roles.get(s.key, "other") for s in data.series}, conn)
            frames = []
            for s in data.series:
                if len(s):
                    frames.append(
                        pd.DataFrame(
                            {"key_id": ids[s.key], "step": s.steps, "value": s.values, "wall_time": s.wall_times}
                        )
                    )
            written = 0
            if frames:
                new = pd.concat(frames, ignore_index=True)
                changed = self._changed_points(conn, run_id, new)
                written = len(changed)
                self._upsert_points(conn, run_id, changed)
                self._advance_watermarks(conn, run_id, new)
            if written:
                version += 1
                conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(data_version=version))
        return WriteResult(run_id=run_id, points=written, data_version=version)

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

    def _advance_watermarks(self, conn: Connection, run_id: int, new: pd.DataFrame) -> None:
        last = new.groupby("key_id")["step"].max()
        ins = self._insert(t.sync_state)
        stmt = ins.on_conflict_do_update(
            index_elements=["run_id", "key_id"],
            set_={
                "last_step": func.max(t.sync_state.c.last_step, ins.excluded.last_step)
                if self._dialect == "sqlite"
                else func.greatest(t.sync_state.c.last_step, ins.excluded.last_step),
                "updated_at": ins.excluded.updated_at,
            },
        )
        now = _now()
        conn.execute(
            stmt,
            [{"run_id": run_id, "key_id": int(k), "last_step": int(s), "updated_at": now} for k, s in last.items()],
        )

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
        with self._writer() as conn, conn.begin():
            conn.execute(
                update(t.sync_log)
                .where(t.sync_log.c.id == log_id)
                .values(ended_at=_now(), runs=runs, points=points, error=error, status="error" if error else "ok")
            )

    def sync_log_frame(self, limit: int = 200) -> pd.DataFrame:
        q = (
            select(t.sync_log, t.sources.c.kind, t.sources.c.uri)
            .join(t.sources, t.sources.c.id == t.sync_log.c.source_id, isouter=True)
            .order_by(t.sync_log.c.id.desc())
            .limit(limit)
        )
        return self._frame(q)

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
        return self._frame(q)

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
        kid = self.key_ids_known([key]).get(key)
        if kid is None:
            return np.empty((0, 3))
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        sql = (f"SELECT step, value, wall_time FROM metric_points WHERE run_id = {mark} AND key_id = {mark} "
               "ORDER BY step")
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(sql, (int(run_id), int(kid)))
            rows = cur.fetchall()
            cur.close()
        finally:
            raw.close()
        return np.array(rows, dtype=float).reshape(-1, 3)  # None → NaN

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
        columns: Mapping[str, float | int | None] | None = None,
    ) -> None:
        cols = {k: _num(v) for k, v in (columns or {}).items()}
        values = {
            "computed_at": _now(),
            "data_version": data_version,
            "result": _jsonable(result),
            **cols,
        }
        ins = self._insert(t.analyses).values(run_id=run_id, kind=kind, **values)
        with self._writer() as conn, conn.begin():
            conn.execute(ins.on_conflict_do_update(index_elements=["run_id", "kind"], set_=values))

    def analyses_frame(self, kind: str | None = None, run_ids: Sequence[int] | None = None) -> pd.DataFrame:
        q = select(t.analyses).order_by(t.analyses.c.run_id)
        if kind is not None:
            q = q.where(t.analyses.c.kind == kind)
        if run_ids is not None:
            q = q.where(t.analyses.c.run_id.in_([int(i) for i in run_ids]))
        return self._frame(q)

    def stale_runs(self, kind: str) -> list[int]:
        """Runs whose analysis of ``kind`` is missing or older than their points."""
        a = t.analyses
        q = (
            select(t.runs.c.id)
            .join(a, and_(a.c.run_id == t.runs.c.id, a.c.kind == kind), isouter=True)
            .where((a.c.id.is_(None)) | (a.c.data_version != t.runs.c.data_version))
            .order_by(t.runs.c.id)
        )
        with self.engine.connect() as conn:
            return [int(r) for r in conn.execute(q).scalars()]

    # ---------------------------------------------------------------- helpers
    def _frame(self, query: Any) -> pd.DataFrame:
        try:
            with self.engine.connect() as conn:
                result = conn.execute(query)
                # plain tuples: pandas builds a frame from Row objects about ten times slower
                return pd.DataFrame.from_records([tuple(r) for r in result.all()], columns=list(result.keys()))
        except OperationalError as exc:
            raise StoreError(f"cannot read the store at {self.url}: {exc.orig}") from exc
        except SQLAlchemyError as exc:  # pragma: no cover - unexpected driver errors keep their type
            raise StoreError(f"store error at {self.url}: {exc}") from exc


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
    if v is None:
        return None
    if isinstance(v, np.integer | int) and not isinstance(v, bool):
        return int(v)
    f = float(v)
    return f if math.isfinite(f) else None


def _jsonable(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None, unknown objects to str."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, bool | str) or obj is None:
        return obj
    if isinstance(obj, np.integer | int):
        return int(obj)
    if isinstance(obj, np.floating | float):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, datetime):
        return obj.isoformat()
    return str(obj)
