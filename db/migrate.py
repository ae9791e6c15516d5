"""Create or upgrade the schema with alembic (the same migrations on SQLite and PostgreSQL).

A store already at the newest revision is recognised with one query, without importing alembic (about a
fifth of a second of every command's start-up); anything else goes through alembic."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from db.errors import StoreError

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to call on every start."""
    if _at_head(engine):
        return
    from alembic import command

    try:
        command.upgrade(alembic_config(engine), "head")
    except OperationalError as exc:
        raise StoreError(f"cannot create or upgrade the schema at {engine.url!r}: {exc.orig}") from exc


def is_initialised(engine: Engine) -> bool:
    try:
        return inspect(engine).has_table("metric_points")
    except OperationalError:
        return False


@cache
def head_revision() -> str | None:
    """The newest revision of ``migrations/versions`` read from the files (None unless exactly one head)."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        src = path.read_text()
        rev = re.search(r'^revision\s*=\s*["\']([^"\']+)["\']', src, re.M)
        down = re.search(r'^down_revision\s*=\s*["\']([^"\']+)["\']', src, re.M)
        if rev:
            revisions.add(rev.group(1))
        if down:
            parents.add(down.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: Engine) -> bool:
    head = head_revision()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))] == [head]
    except (OperationalError, ProgrammingError):  # no alembic_version table yet: a new store
        return False
