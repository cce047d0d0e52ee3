"""An instance records the port its container publishes on its node's machine: a daemon other than the one that
made the instance's endpoint (a forward of its own) reaches it through a forward of its own to that port.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instance", recreate="never") as batch:
        batch.add_column(sa.Column("published", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance") as batch:
        batch.drop_column("published")
