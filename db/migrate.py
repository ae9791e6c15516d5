"""Create or upgrade the schema with alembic (the same migrations on SQLite and PostgreSQL).

alembic is imported only to migrate: a reader (the dashboard, read commands) opening an existing store never
pays its import (about a second on a busy machine); the newest revision is read from the migration files."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from db.errors import StoreError

MIGRATIONS = Path(__file__).with_name("migrations")
_REVISION = re.compile(r"""^(down_revision|revision)\s*=\s*["']?([^"'\s]+)["']?""", re.MULTILINE)


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


@cache
def _revisions() -> tuple[frozenset[str], frozenset[str | None]]:
    """(revisions, their parents) of ``migrations/versions``."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((k, v) for k, v in _REVISION.findall(path.read_text()))
        if "revision" in found:
            revisions.add(found["revision"])
            parents.add(found.get("down_revision"))
    return frozenset(revisions), frozenset(parents)


def known_revisions() -> frozenset[str]:
    """Every schema revision this version of entropy-dash can read or upgrade from."""
    return _revisions()[0]


def head_revision() -> str:
    """The newest revision of ``migrations/versions`` (the one no other revision names as its parent)."""
    revisions, parents = _revisions()
    heads = revisions - parents
    return next(iter(heads)) if len(heads) == 1 else ""


def _at_head(engine: Engine) -> bool:
    """The store's revision is the newest one (read without importing alembic: start-up stays fast)."""
    current = current_revision(engine)
    return bool(current) and current == head_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to call on every start (a no-op at head)."""
    if _at_head(engine):
        return
    from alembic import command

    try:
        command.upgrade(alembic_config(engine), "head")
    except OperationalError as exc:
        raise StoreError(f"cannot create or upgrade the schema at {engine.url!r}: {exc.orig}") from exc


def current_revision(engine: Engine) -> str | None:
    """The store's alembic revision (None when it has none)."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except (OperationalError, ProgrammingError):
        return None


def is_initialised(engine: Engine) -> bool:
    try:
        return inspect(engine).has_table("metric_points")
    except OperationalError:
        return False
