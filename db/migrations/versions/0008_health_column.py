"""Each run's health findings in context are stored by the cross-run step (``analyses`` rows of kind
``health``), with the worst severity of each detector as a small JSON column the Health page's grid reads
without reading any run's document.

The rows themselves are written by the next writer (``ingest``, ``schedule``, ``analyse``): the stored
cross-run results of an older version are not current, so readers compute them in memory until then.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("analyses", sa.Column("health", sa.JSON, nullable=True))


def downgrade() -> None:
    # the stored cross-run results go with their health rows: the next writer computes them again
    op.execute(sa.text("DELETE FROM analyses WHERE kind = 'health'"))
    op.execute(sa.text("DELETE FROM cross_run"))
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("health")
