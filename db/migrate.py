"""Create or upgrade the schema with alembic (the same migrations on SQLite and PostgreSQL).

alembic is imported only to migrate: a reader (the dashboard, read commands) opening an existing store never
pays its import (about a second on a busy machine)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import OperationalError

from db.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; safe to call on every start."""
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
