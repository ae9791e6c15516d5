"""Storage: SQLAlchemy 2.0 schema, engine from URL, the Store repository, alembic migrations.

``from db import Store`` works as usual; the heavy modules (SQLAlchemy, pandas) are imported on first use,
so that importing ``db.errors`` (the CLI does, at start-up) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {"Store": "db.store", "DEFAULT_DB_URL": "db.engine", "make_engine": "db.engine",
         "resolve_db_url": "db.engine"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'db' has no attribute {name!r}")
