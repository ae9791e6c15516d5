"""Run state and planned length; analysis versions and status; downsampled series; file tailing offsets.

* ``runs.state`` (running | finished | failed | unknown, normalised from the source) and
  ``runs.planned_steps`` with ``runs.planned_from`` (which parameter, or "user", gave it);
* ``analyses.analysis_version`` (the analysis code that made the row: a new version re-analyses),
  ``analyses.status`` and key numbers of the bounded ceiling and the live forecast;
* ``metric_lod``: per (run, key) downsampled levels of the stored points, written at ingest, so that pages
  read a few thousand rows per run instead of every point;
* ``file_state``: per file of a file source, what was read of it (size, modification time, a hash of its
  head, the byte offset parsed up to, the parser's state), so that a growing file is tailed.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("state", sa.String(16), nullable=True))
        batch.add_column(sa.Column("planned_steps", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("planned_from", sa.String(255), nullable=True))
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("analysis_version", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("ceiling_raw", sa.Float, nullable=True))
        batch.add_column(sa.Column("forecast_final", sa.Float, nullable=True))
        batch.add_column(sa.Column("forecast_lo", sa.Float, nullable=True))
        batch.add_column(sa.Column("forecast_hi", sa.Float, nullable=True))
    op.create_table(
        "metric_lod",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("key_id", sa.Integer, sa.ForeignKey("metric_keys.id"), primary_key=True),
        sa.Column("level", sa.SmallInteger, primary_key=True),
        sa.Column("step", sa.BigInteger, primary_key=True),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("wall_time", sa.Float, nullable=True),
    )
    op.create_table(
        "file_state",
        sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("path_hash", sa.String(64), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime", sa.Float, nullable=False),
        sa.Column("inode", sa.BigInteger, nullable=True),
        sa.Column("head_sha", sa.String(64), nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("parser_state", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("file_state")
    op.drop_table("metric_lod")
    with op.batch_alter_table("analyses") as batch:
        for col in ("forecast_hi", "forecast_lo", "forecast_final", "ceiling_raw", "status", "analysis_version"):
            batch.drop_column(col)
    with op.batch_alter_table("runs") as batch:
        for col in ("planned_from", "planned_steps", "state"):
            batch.drop_column(col)
