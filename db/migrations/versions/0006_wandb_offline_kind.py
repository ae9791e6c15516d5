"""Offline W&B runs get a kind of their own: ``sources.kind = 'wandb-offline'``.

Until now both W&B sources were stored as ``wandb``; a cloud project's URI is ``ENTITY/PROJECT``, an
offline source's is the absolute path of its folder (the command line and the scheduler resolve it), so a
``wandb`` row whose URI starts with ``/`` is an offline one. Runs and points keep their source row.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("UPDATE sources SET kind = 'wandb-offline' WHERE kind = 'wandb' AND uri LIKE '/%'"))


def downgrade() -> None:
    op.execute(sa.text("UPDATE sources SET kind = 'wandb' WHERE kind = 'wandb-offline'"))
