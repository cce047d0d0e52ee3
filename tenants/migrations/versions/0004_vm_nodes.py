"""Nodes can be VMs: the flavor they were made with, the tenant a dedicated one belongs to, whether they
are draining, the accelerator they run on, and a message saying why one failed.

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
    with op.batch_alter_table("node") as batch:
        batch.add_column(sa.Column("flavor", sa.String, nullable=True))
        batch.add_column(sa.Column("tenant", sa.String, nullable=True))
        batch.add_column(sa.Column("draining", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("accel", sa.String, nullable=True))
        batch.add_column(sa.Column("message", sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("node") as batch:
        for column in ("message", "accel", "draining", "tenant", "flavor"):
            batch.drop_column(column)
