"""Results across runs, stored at write time: the replay's summary per fraction (``cross_run``).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cross_run",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("analysis_version", sa.Integer, nullable=False),
        sa.Column("inputs", sa.String(255), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cross_run")
