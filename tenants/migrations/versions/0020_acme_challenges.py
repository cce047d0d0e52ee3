"""ACME's HTTP-01 challenges in the database: every daemon's front door answers every daemon's orders.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acme_challenge",
        sa.Column("token", sa.String, primary_key=True),
        sa.Column("key_authorization", sa.String, nullable=False),
        sa.Column("daemon", sa.String, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("acme_challenge")
