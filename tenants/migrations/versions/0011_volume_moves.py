"""A volume moves between nodes: while it does, the node it goes to is recorded, and no instance mounts it.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("volume", recreate="never") as batch:
        batch.add_column(sa.Column("moving_to", sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volume", table_kwargs={"sqlite_autoincrement": True}) as batch:  # ids never reused
        batch.drop_column("moving_to")
