"""The repository: every read and write of the store goes through ``Store``.

One SQLAlchemy implementation serves both backends (SQLite, PostgreSQL); the dialect only decides the
upsert statement. Writes of a run happen in one transaction: the run row, its new or changed points, its
watermarks and its data version land together or not at all, so a killed ingest never leaves half a run.

``Store`` is one class built from one part per concern, each in its own module: runs (``db.store_runs``),
points and their downsampled levels (``db.store_points``), analyses and cross-run results
(``db.store_analyses``), sources with their watermarks and file states (``db.store_sources``) and the sync log
(``db.store_sync``), over the engine helpers of ``db.store_base``. This module opens a store (reachable, not
newer than this code, writable when it will be written, migrated).
"""

from __future__ import annotations

import os

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from db import limits
from db.engine import make_engine
from db.errors import StoreError, StoreReadOnly, StoreTooNew
from db.migrate import current_revision, head_revision, is_initialised, known_revisions, upgrade
from db.store_analyses import AnalysesMixin
from db.store_base import StoreBase
from db.store_points import POINT_BATCH, PointsMixin
from db.store_runs import RunsMixin, WriteResult
from db.store_sources import SourcesMixin
from db.store_sync import SyncLogMixin

__all__ = ["POINT_BATCH", "LOD_LESS_REVISIONS", "Store", "WriteResult"]

#: schema revisions that had no downsampled levels (migration 0003 added them): a writer opening such a store
#: computes them from the stored points once
LOD_LESS_REVISIONS = ("0001", "0002")


class Store(RunsMixin, PointsMixin, AnalysesMixin, SourcesMixin, SyncLogMixin, StoreBase):
    """Typed access to the tables in ``db.schema``."""

    @classmethod
    def open(cls, url: str | None = None, *, create: bool = True) -> Store:
        """Open the store at ``url`` (``--db``/``$ENTROPY_DASH_DB``/default); migrate it when ``create``."""
        engine = make_engine(url)
        _check_reachable(engine)
        _check_not_newer(engine)
        if create:
            _check_writable(cls(engine))
            before = current_revision(engine)
            upgrade(engine)
            if before in LOD_LESS_REVISIONS:  # written before the downsampled levels existed: fill them once
                store = cls(engine)
                store.rebuild_lod()
                return store
        elif not is_initialised(engine):
            raise StoreError(
                f"no entropy-dash database at {engine.url.render_as_string(hide_password=True)}: "
                "run `entropy-dash init` (or an ingest) first"
            )
        else:
            have, want = current_revision(engine), head_revision()
            if have != want:
                raise StoreError(
                    f"the store at {engine.url.render_as_string(hide_password=True)} has schema revision {have}, "
                    f"this version of entropy-dash needs {want}: run `entropy-dash init` (with a role that may "
                    "alter the schema) to upgrade it"
                )
        return cls(engine)



def _check_not_newer(engine: Engine) -> None:
    """A store whose schema revision this version does not know was written by a newer one: it is neither
    read (its tables may mean something else) nor migrated (alembic cannot go from an unknown revision)."""
    have = current_revision(engine)
    if have is not None and have not in known_revisions():
        raise StoreTooNew(f"the store at {engine.url.render_as_string(hide_password=True)} was written by a newer "
                          f"entropy-dash (schema revision {have}; this one knows up to {head_revision()}): upgrade "
                          "entropy-dash to use it (nothing was changed)")


def _check_writable(store: Store) -> None:
    """A writing command on a store opened read-only (``?mode=ro``, a read-only file) is refused before it
    starts (PostgreSQL roles are checked on their first write: the tables may not exist yet)."""
    if store._dialect != "sqlite" or store.is_writable():
        return
    why = ("the URL says ?mode=ro" if "mode=ro" in str(store.engine.url)
           else "the file or its folder is not writable by this user")
    path = (store.engine.url.database or "").removeprefix("file:").split("?", 1)[0]
    raise StoreReadOnly(f"the store {path} is read-only here ({why}) and this command writes to it: "
                        "drop ?mode=ro, make the file writable, or give another --db (read commands work as is)")


def _check_reachable(engine: Engine) -> None:
    """Connect once: an unreachable server, a file that is no SQLite database or a folder that does not exist
    is a one-line ``StoreError`` naming it (instead of 'no database … run init' or a traceback)."""
    url = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("SELECT count(*) FROM sqlite_master")
    except DBAPIError as exc:
        reason = limits.one_line(str(exc.orig), 300)
        if engine.dialect.name == "sqlite":
            path = (engine.url.database or ":memory:").removeprefix("file:").split("?", 1)[0]
            if "mode=ro" in str(engine.url) and not os.path.exists(path):
                raise StoreError(f"no store at {path}: it was opened read-only (?mode=ro), so it is not created; "
                                 "run `entropy-dash init` without ?mode=ro first") from None
            if "not a database" in reason or "malformed" in reason:
                raise StoreError(f"{path} is not an SQLite database ({reason}): give another --db file") from None
            raise StoreError(f"cannot open the SQLite database {path}: {reason} (does its folder exist, is it "
                             "writable?)") from None
        if "does not exist" in reason or "authentication" in reason or "password" in reason:
            raise StoreError(f"cannot connect to {url}: {reason}") from None
        raise StoreError(f"cannot reach the PostgreSQL server of {url} (is it running, is the address right?): "
                         f"{reason}") from None
