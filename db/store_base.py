"""The base every part of ``db.store.Store`` builds on: the engine and its dialect, the dialect's upsert
statement, the writing connection and reads into frames; helpers the parts share.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from importlib import import_module
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from db.errors import StoreError
from db.masking import mask_secrets

if TYPE_CHECKING:
    import pandas as pd
else:
    class _LazyModule:
        """pandas, imported on first use: a sync that finds nothing new never needs it (start-up stays fast)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(import_module("pandas"), name)

    pd = _LazyModule()


def _now() -> datetime:
    return datetime.now(UTC)


class StoreBase:
    """The engine, its dialect and the connection helpers; ``Store`` adds the tables' concerns."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name
        self._key_cache: dict[str, int] = {}

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


def _masked(df: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Text columns with any URL password masked (rows written before URIs were stored masked)."""
    for col in columns:
        if col in df and len(df):
            df[col] = [mask_secrets(v, ()) if isinstance(v, str) else v for v in df[col]]
    return df
