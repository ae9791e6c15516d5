"""Tables of the store (see docs/DESIGN.md, "Data model").

Non-finite metric values are kept as NULL in ``metric_points.value`` (SQLite cannot hold NaN) so that they
are counted in ``runs`` and kept out of fits, never silently dropped.
"""

from __future__ import annotations

import re

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

sources = Table(
    "sources",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # a kind of the source registry, ingest.registry (0004)
    Column("uri", Text, nullable=False),
    Column("options", JSON, nullable=False, default=dict),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("kind", "uri", name="uq_sources_kind_uri"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("project", String(255), nullable=True),
    Column("name", Text, nullable=False),
    Column("status", String(32), nullable=True),
    Column("params", JSON, nullable=False, default=dict),
    Column("tags", JSON, nullable=False, default=dict),
    Column("model", String(255), nullable=True),
    Column("algorithm", String(64), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=True),
    # bumped whenever the run's points change; analyses remember the version they were computed on
    Column("data_version", Integer, nullable=False, default=0),
    # every metric name the source had for this run, fetched or not (unrecognised keys are reported)
    Column("keys_seen", JSON, nullable=False, default=list),
    # notes of the last read (e.g. a torn .wandb record), shown by `runs`
    Column("notes", JSON, nullable=False, default=list),
    # running | finished | failed | unknown, normalised from the source (migration 0003)
    Column("state", String(16), nullable=True),
    # the run's planned length in steps when the source (or the user) says so, and where it came from
    Column("planned_steps", BigInteger, nullable=True),
    Column("planned_from", String(255), nullable=True),
    UniqueConstraint("source_id", "external_id", name="uq_runs_source_external"),
)

metric_keys = Table(
    "metric_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(512), nullable=False, unique=True),
    Column("role", String(32), nullable=False, default="other"),
)

# On PostgreSQL partitioned by hash of run_id into metric_points_p00 … _p15 (migration 0007, which says why);
# one plain table on SQLite.
metric_points = Table(
    "metric_points",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key_id", Integer, ForeignKey("metric_keys.id"), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("value", Float, nullable=True),  # NULL = non-finite value in the source
    Column("wall_time", Float, nullable=True),  # unix seconds
    postgresql_partition_by="HASH (run_id)",
)

analyses = Table(
    "analyses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False),
    Column("data_version", Integer, nullable=False),
    Column("result", JSON, nullable=False),
    Column("a", Float),
    Column("b", Float),
    Column("ceiling", Float),
    Column("ceiling_lo", Float),
    Column("ceiling_hi", Float),
    Column("r2", Float),
    Column("n", Integer),
    Column("plateau_step", Float),
    Column("collapse_step", Float),
    # the analysis code's version (analysis.pipeline.ANALYSIS_VERSION): a new version re-analyses (0003)
    Column("analysis_version", Integer, nullable=False, default=0),
    Column("status", String(16), nullable=True),  # ok | degenerate | failed | skipped
    Column("ceiling_raw", Float),  # b − a before bounding to the metric's range
    Column("forecast_final", Float),  # live forecast at the planned end (running runs only)
    Column("forecast_lo", Float),
    Column("forecast_hi", Float),
    Column("health", JSON),  # health rows: detector → worst severity, what the Health page's grid reads (0008)
    UniqueConstraint("run_id", "kind", name="uq_analyses_run_kind"),
)

# Results across runs (migration 0004): the replay's summary per fraction and what it was computed from, written
# at write time (ingest, schedule, `analyse`) beside the per-run rows of kind "forecast"; reads take them as stored.
cross_run = Table(
    "cross_run",
    metadata,
    Column("kind", String(32), primary_key=True),  # "replay"
    Column("analysis_version", Integer, nullable=False),
    Column("inputs", String(255), nullable=False),  # fingerprint of the per-run analyses it was computed from
    Column("computed_at", DateTime(timezone=True), nullable=False),
    Column("result", JSON, nullable=False),
)

# Downsampled levels of each (run, key) series, written at ingest next to the points (migration 0003):
# pages read these few thousand rows per run instead of every point.
metric_lod = Table(
    "metric_lod",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key_id", Integer, ForeignKey("metric_keys.id"), primary_key=True),
    Column("level", SmallInteger, primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("value", Float, nullable=True),
    Column("wall_time", Float, nullable=True),
)

# What was read of each file of a file source, so that growing files are tailed (migration 0003).
file_state = Table(
    "file_state",
    metadata,
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("path_hash", String(64), primary_key=True),  # sha256 of the path (paths may be long)
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime", Float, nullable=False),
    Column("inode", BigInteger, nullable=True),
    Column("head_sha", String(64), nullable=False),  # sha256 of the file's first bytes: a rewrite changes it
    Column("offset", BigInteger, nullable=False),  # bytes parsed (up to the last complete record)
    Column("parser_state", JSON, nullable=False, default=dict),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

sync_state = Table(
    "sync_state",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key_id", Integer, ForeignKey("metric_keys.id"), primary_key=True),
    Column("last_step", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

sync_log = Table(
    "sync_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_id", Integer, ForeignKey("sources.id", ondelete="CASCADE"), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("status", String(16), nullable=False),  # running | ok | error | interrupted
    Column("runs", Integer, nullable=False, default=0),
    Column("points", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("pid", Integer, nullable=True),  # the process running the job (migration 0002)
    Column("host", String(255), nullable=True),
)


_POINT_PARTITION = re.compile(r"metric_points_p\d\d")


def compared(name: str | None, type_: str, parent_names: object) -> bool:
    """Whether alembic's autogenerate compares this database object with ``metadata`` (its ``include_name``
    hook): everything but the partitions of ``metric_points``, which only migration 0007 knows."""
    return not (type_ == "table" and name is not None and _POINT_PARTITION.fullmatch(name) is not None)
