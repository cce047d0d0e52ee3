"""A managed service's credentials rotate: the login its apps were given before stays valid, recorded, until
they all run with the new one.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("service", recreate="never") as batch:
        batch.add_column(sa.Column("retiring", sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("service", table_kwargs={"sqlite_autoincrement": True}) as batch:  # ids never reused
        batch.drop_column("retiring")
