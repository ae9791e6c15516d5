"""Runs: writing runs with their points in one transaction (``write_run``, ``write_runs``) and reading the
runs table (frames, pages, filters, names, the data version).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, func, select

from db import limits, lod
from db import schema as t
from db.records import RunData, RunInfo, planned_length
from db.store_base import StoreBase, _masked, pd
from db.store_points import POINT_BATCH, _lod_rows
from db.values import json_safe


@dataclass(frozen=True)
class WriteResult:
    run_id: int
    points: int  # new or changed points written
    data_version: int


class RunsMixin(StoreBase):
    """The runs of ``Store``: a run's row, points (``PointsMixin``), watermarks and file states (``SourcesMixin``)
    land in one transaction."""

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

    def data_version(self) -> tuple[int, int, str]:
        """Changes whenever points or analyses change: the cache key of the dashboard."""
        with self.engine.connect() as conn:
            versions = conn.execute(
                select(func.coalesce(func.sum(t.runs.c.data_version), 0), func.count()).select_from(t.runs)
            ).one()
            last = conn.execute(select(func.max(t.analyses.c.computed_at))).scalar_one()
        return int(versions[0]), int(versions[1]), str(last)


def _planned(info: RunInfo, cut: int) -> dict[str, Any]:
    """The run's planned length as the source set it, else as its params state it."""
    steps, origin = (info.planned_steps, info.planned_from) if info.planned_steps else planned_length(info.params)
    return {"planned_steps": steps, "planned_from": limits.text_column(origin, cut)}
