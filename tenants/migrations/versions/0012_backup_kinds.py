"""A backup is a volume's files or a service's `pg_dump` (those taken before are files), and its row says which
store keeps its archive (those taken before: the one the daemon names, or this host).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backup", recreate="never") as batch:
        batch.add_column(sa.Column("kind", sa.String, nullable=False, server_default="files"))
        batch.add_column(sa.Column("store", sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backup", table_kwargs={"sqlite_autoincrement": True}) as batch:  # ids never reused
        batch.drop_column("store")
        batch.drop_column("kind")
