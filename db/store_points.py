"""Points: metric keys, the read-compare-upsert of a stored run's points, their downsampled levels
(``metric_lod``, see ``db.lod``) and every read of points and levels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, select, update

from db import lod
from db import schema as t
from db.store_base import StoreBase, pd

POINT_BATCH = 5_000


class PointsMixin(StoreBase):
    """The metric keys, points and downsampled levels of ``Store``."""

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

    def _write_points(self, conn: Connection, run_id: int, series: Sequence[Any], kid: Mapping[str, int]) -> int:
        """Points of a run the store has seen: only new or changed ones are written, with their levels."""
        new = pd.concat([pd.DataFrame({"key_id": kid[s.key], "step": s.steps, "value": s.values,
                                       "wall_time": s.wall_times}) for s in series], ignore_index=True)
        changed = self._changed_points(conn, run_id, new)
        self._upsert_points(conn, run_id, changed)
        self._refresh_lod(conn, run_id, changed)
        return len(changed)

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

    def points_of(self, run_ids: Sequence[int], keys: Sequence[str]) -> dict[tuple[int, str], np.ndarray]:
        """``points`` of every (run, key) of ``run_ids`` × ``keys`` that has points, in one query: the same
        (n, 3) arrays, keyed by (run id, key). For analysing many runs at once (one query, not one per curve)."""
        ids, names = sorted({int(i) for i in run_ids}), sorted({str(k) for k in keys})
        known = self.key_ids_known(names) if ids and names else {}
        if not known:
            return {}
        by_id = {i: k for k, i in known.items()}
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        sql = (f"SELECT run_id, key_id, step, value, wall_time FROM metric_points WHERE run_id IN "
               f"({','.join([mark] * len(ids))}) AND key_id IN ({','.join([mark] * len(known))}) "
               "ORDER BY run_id, key_id, step")
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(sql, (*ids, *by_id))
            rows = cur.fetchall()
            cur.close()
        finally:
            raw.close()
        arr = np.array(rows, dtype=float).reshape(-1, 5)
        if not len(arr):
            return {}
        cut = np.flatnonzero((np.diff(arr[:, 0]) != 0) | (np.diff(arr[:, 1]) != 0)) + 1
        return {(int(part[0, 0]), by_id[int(part[0, 1])]): part[:, 2:].copy()
                for part in np.split(arr, cut)}

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


def _lod_rows(run_id: int, key_id: int, level: int, pts: np.ndarray) -> list[tuple]:
    """metric_lod rows of one level's points (step, value, wall_time; unknown wall times as NULL)."""
    n = pts.shape[0]
    return list(zip([int(run_id)] * n, [int(key_id)] * n, [int(level)] * n,
                    pts[:, 0].astype(np.int64).tolist(), pts[:, 1].tolist(), _nullable(pts[:, 2]), strict=True))


def _nullable(arr: np.ndarray) -> list[float | None]:
    """Floats as a list with None for NaN and ±inf (stored as NULL)."""
    return [v if v == v and v not in (math.inf, -math.inf) else None for v in arr.tolist()]
