"""A daemon records its machine's name: a build is refused on a host other than the leader's.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("daemon", recreate="never") as batch:
        batch.add_column(sa.Column("host", sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("daemon") as batch:
        batch.drop_column("host")
