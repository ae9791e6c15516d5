"""Storage: SQLAlchemy 2.0 schema, engine from URL, the Store repository, alembic migrations."""

from db.engine import DEFAULT_DB_URL, make_engine, resolve_db_url
from db.store import Store

__all__ = ["DEFAULT_DB_URL", "Store", "make_engine", "resolve_db_url"]
