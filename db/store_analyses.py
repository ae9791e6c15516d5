"""Analyses: per-run analysis results (which are stale), and the cross-run results with their inputs'
fingerprint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select

from db import schema as t
from db.store_base import StoreBase, _now, pd
from db.values import finite_number, json_safe

#: analyses rows per executemany (bounds the memory of one call, not the transaction)
UPSERT_BATCH = 1_000


class AnalysesMixin(StoreBase):
    """The per-run and cross-run analyses of ``Store``."""

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
        columns are stored as plain numbers (None for non-finite), text columns as given, mappings as JSON. Rows with the same
        columns, one after another, go in one ``executemany`` of the dialect's upsert per ``UPSERT_BATCH`` rows
        (the last of a (run, kind) given twice in it wins): the rows one statement at a time would leave."""
        if not items:
            return
        now = _now()
        # consecutive rows with the same columns form one group, in the order given
        groups: list[tuple[tuple[str, ...], dict[tuple[int, str], dict[str, Any]]]] = []
        for run_id, kind, data_version, result, columns in items:
            cols = {k: (v if isinstance(v, str) else json_safe(v) if isinstance(v, Mapping) else _num(v))
                    for k, v in columns.items()}
            row = {"run_id": int(run_id), "kind": kind, "computed_at": now, "data_version": data_version,
                   "result": json_safe(result), **cols}
            names = tuple(sorted(cols))
            if not groups or groups[-1][0] != names:
                groups.append((names, {}))
            groups[-1][1][(int(run_id), kind)] = row
        with self._writer() as conn, conn.begin():
            for names, by_key in groups:
                ins = self._insert(t.analyses)
                updated = ("computed_at", "data_version", "result", *names)
                stmt = ins.on_conflict_do_update(index_elements=["run_id", "kind"],
                                                 set_={c: ins.excluded[c] for c in updated})
                rows = list(by_key.values())
                for i in range(0, len(rows), UPSERT_BATCH):
                    conn.execute(stmt, rows[i:i + UPSERT_BATCH])

    def analyses_frame(self, kind: str | None = None, run_ids: Sequence[int] | None = None) -> pd.DataFrame:
        q = select(t.analyses).order_by(t.analyses.c.run_id)
        if kind is not None:
            q = q.where(t.analyses.c.kind == kind)
        if run_ids is not None:
            q = q.where(t.analyses.c.run_id.in_([int(i) for i in run_ids]))
        return self._frame(q)

    def analyses_columns(self, kind: str, names: Sequence[str], run_ids: Sequence[int] | None = None) -> pd.DataFrame:
        """run_id and the key columns ``names`` (``status``, ``n``, ``ceiling`` …) of the analyses of ``kind``, by
        run id: what a page lists every run by, without reading any run's result document."""
        a = t.analyses
        q = select(a.c.run_id, *(a.c[n] for n in names)).where(a.c.kind == kind).order_by(a.c.run_id)
        if run_ids is not None:
            q = q.where(a.c.run_id.in_([int(i) for i in run_ids]))
        with self.engine.connect() as conn:
            return pd.DataFrame(conn.execute(q).all(), columns=["run_id", *names])

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


def _num(v: Any) -> float | int | None:
    """An analyses column: integers kept, other numbers finite floats or None."""
    if isinstance(v, np.integer | int) and not isinstance(v, bool):
        return int(v)
    return finite_number(v)
