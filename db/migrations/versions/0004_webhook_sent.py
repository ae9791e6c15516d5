"""Health findings posted to the webhook (``db.webhook_log``): one row per (run, detector, benchmark,
severity), so each finding is posted once.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_sent",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("detector", sa.String(64), primary_key=True),
        sa.Column("benchmark", sa.String(255), primary_key=True),
        sa.Column("severity", sa.String(16), primary_key=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_sent")
