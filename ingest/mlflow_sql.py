"""An MLflow SQLite store read with SQL directly, read-only: several times faster than through MLflow's own
store, and MLflow is not imported. Nothing is sampled; the same runs, points, NaNs and duplicate steps come
back as through a server.

MLflow's tables are not a promised interface, so they are read only when the store's alembic revision (the
``alembic_version`` table MLflow's migrations keep) is one of ``KNOWN_REVISIONS``: the revisions of MLflow
3.0.0 to 3.17.2, whose tables hold the columns read here. A store of another revision is read through
``MlflowClient`` instead (``ingest.mlflow_store``), and the runs' notes say so.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from sqlalchemy.engine import make_url

from ingest.errors import IngestError
from ingest.mlflow_common import ListedRun, Points, Reader, listed_run

#: MLflow's schema revisions from 3.0.0 (6953534de441) to 3.17.2 (dc11669786a5), oldest first
KNOWN_REVISIONS = frozenset((
    '6953534de441', 'bda7b8c39065', 'cbc13b556ace', '770bee3ae1dd', 'a1b2c3d4e5f6', 'de4033877273',
    '1a0cddfcaa16', '534353b11cbc', '71994744cf8e', '3da73c924c2f', 'bf29a5ff90ea', '1bd49d398cd23',
    'b7c8d9e0f1a2', '5d2d30f0abce', 'c9d4e5f6a7b8', '2c33131f4dae', 'd3e4f5a6b7c8', 'd0e1f2a3b4c5',
    'c8d9e0f1a2b3', '1b5f0d9ad7c1', 'e1f2a3b4c5d6', '76601a5f987d', 'c3d6457b6d8a', 'a5b4c3d2e1f0',
    'ae8bbe7743c9', '7d34483879f0', 'da6fb0208061', '89d3d66ed43f', 'b7e4c1a90f23', 'a8b9c0d1e2f3',
    'c1d2e3f4a5b6', 'c3d9e7f1a2b4', '6f8d9c3b2a1e', '1971f2d9a75b', '17e22815139b', 'b7e2c1a4d9f3',
    '75868b020152', 'dc11669786a5',
))


class SqliteReader(Reader):
    """An MLflow SQLite store read with SQL directly, read-only (``mode=ro``): no sampling, no windows."""

    samples = False
    window_steps = None
    points_per_call = 1_000_000
    concurrency = 2  # reads (the sqlite3 module lets go of the GIL) overlap the writes to our store
    TABLES = {"experiments": ("experiment_id", "name", "lifecycle_stage"),
              "runs": ("run_uuid", "name", "experiment_id", "status", "start_time", "end_time", "lifecycle_stage"),
              "params": ("key", "value", "run_uuid"), "tags": ("key", "value", "run_uuid"),
              "latest_metrics": ("key", "step", "run_uuid"),
              "metrics": ("key", "value", "timestamp", "run_uuid", "step", "is_nan")}

    def __init__(self, uri: str, connect_uri: str) -> None:
        super().__init__(uri, connect_uri)
        database = make_url(connect_uri).database
        if not database or database == ":memory:":
            raise IngestError(f"MLflow store {uri!r} names no database file: use sqlite:///path/to/mlflow.db")
        self.path = Path(database).expanduser()
        self._local = threading.local()
        self._workspace_column: bool | None = None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self.path.is_file():
                raise IngestError(f"no MLflow store at {self.uri}: {self.path} does not exist")
            try:
                conn = sqlite3.connect(f"file:{quote(str(self.path.resolve()))}?mode=ro", uri=True, timeout=60,
                                       check_same_thread=False)
            except sqlite3.Error as exc:
                raise IngestError(f"cannot open the MLflow store {self.uri}: {exc}") from exc
            self._local.conn = conn
        return conn

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self._conn().execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as exc:
            raise IngestError(f"cannot read the MLflow store {self.uri}: {exc}") from exc

    def unsupported(self) -> str | None:
        """Why this store must be read through MLflow's own client instead (its schema revision is not one
        of ``KNOWN_REVISIONS``), or None. A missing or unreadable file is an ``IngestError``."""
        try:
            rows = self._conn().execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.Error:
            rows = []
        revision = rows[0][0] if len(rows) == 1 else None
        if revision in KNOWN_REVISIONS:
            return None
        return (f"its schema revision {revision!r} is not one this version reads with SQL" if revision else
                "it has no MLflow schema revision") + " (MLflow 3.0 to 3.17 are)"

    def check(self) -> None:
        found = {}
        for table in self.TABLES:
            found[table] = {row[1] for row in self._query(f"PRAGMA table_info({table})")}
        missing = [f"{t}.{c}" for t, cols in self.TABLES.items() for c in cols if c not in found[t]]
        if missing:
            raise IngestError(f"{self.uri} is not an MLflow tracking store this version reads (missing "
                              f"{', '.join(missing[:4])}): give the URL of a tracking server serving it instead")
        self._workspace_column = "workspace" in found["experiments"]

    def _workspace_filter(self) -> tuple[str, list[Any]]:
        if self._workspace_column is None:
            self.check()
        if not self._workspace_column:
            return "", []
        workspace = (os.environ.get("MLFLOW_WORKSPACE") or "").strip() or "default"
        if workspace == "default":
            return " AND (workspace IS NULL OR workspace = 'default')", []
        return " AND workspace = ?", [workspace]

    def experiments(self, names: Sequence[str]) -> dict[str, str]:
        where, args = self._workspace_filter()
        if not names:
            rows = self._query(f"SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'{where} "
                               "ORDER BY experiment_id", args)
            return {str(i): n for i, n in rows}
        out = {}
        for name in names:
            rows = self._query(f"SELECT experiment_id, name FROM experiments WHERE name = ?{where}", [name, *args])
            if not rows:
                raise IngestError(f"experiment {name!r} not found at MLflow {self.uri}")
            out[str(rows[0][0])] = rows[0][1]
        return out

    def runs(self, exps: Mapping[str, str]) -> list[ListedRun]:
        marks = ", ".join("?" * len(exps))
        rows = self._query(f"SELECT run_uuid, name, experiment_id, status, start_time, end_time FROM runs "
                           f"WHERE experiment_id IN ({marks}) AND lifecycle_stage = 'active' "
                           "ORDER BY start_time, run_uuid", [int(e) if str(e).isdigit() else e for e in exps])
        params: dict[str, dict[str, str]] = {}
        tags: dict[str, dict[str, str]] = {}
        latest: dict[str, dict[str, int]] = {}
        ids = [r[0] for r in rows]
        for lo in range(0, len(ids), 500):
            part = ids[lo : lo + 500]
            marks = ", ".join("?" * len(part))
            for rid, k, v in self._query(f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({marks})", part):
                params.setdefault(rid, {})[k] = v
            for rid, k, v in self._query(f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({marks})", part):
                tags.setdefault(rid, {})[k] = v
            for rid, k, s in self._query(f"SELECT run_uuid, key, step FROM latest_metrics WHERE run_uuid IN ({marks})",
                                         part):
                latest.setdefault(rid, {})[k] = int(s)
        return [listed_run(run_id=rid, run_name=name, experiment=exps.get(str(exp), str(exp)), status=status,
                        start_ms=start, end_ms=end, params=params.get(rid, {}), tags=tags.get(rid, {}),
                        latest=latest.get(rid, {}))
                for rid, name, exp, status, start, end in rows]

    def points(self, run_ids: Sequence[str], key: str, start: int, end: int) -> dict[str, Points]:
        out = {}
        for rid in run_ids:  # one run a query: MLflow's (run_uuid, key, step) index answers it
            rows = self._query("SELECT step, value, timestamp, is_nan FROM metrics WHERE run_uuid = ? AND key = ? "
                               "AND step >= ? AND step <= ?", [rid, key, start, end])
            if rows:
                arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
                values = np.where(arr[:, 3] != 0, np.nan, arr[:, 1])
                out[rid] = (np.array([r[0] for r in rows], dtype=np.int64), values, arr[:, 2] / 1000.0)
        return out
