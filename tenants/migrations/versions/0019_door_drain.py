"""Standbys' front doors say which instances being removed they have let go of (nothing in flight to them).

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "door_drain",
        sa.Column("daemon", sa.String, sa.ForeignKey("daemon.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("instance", sa.String, primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("door_drain")
