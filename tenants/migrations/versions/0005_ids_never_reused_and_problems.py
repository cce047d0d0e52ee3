"""Integer ids are never reused, and the reconciler says in words why an app or an instance is not running.

SQLite hands a deleted row's id to the next row unless the table is AUTOINCREMENT, so a new app could take
a deleted one's id, and with it what the reconciler held under that id (its crash backoff, its routes).
SQLite cannot alter that on a table: batch mode copies each into a new one (`tenants.db.upgrade` turns
foreign keys off meanwhile, so dropping the old table cascades to nothing). Other databases never reuse ids.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES_WITH_IDS = ("tenant", "app", "sshkey", "apitoken", "event")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES_WITH_IDS:
            with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
                pass
    with op.batch_alter_table("app") as batch:
        batch.add_column(sa.Column("problem", sa.String, nullable=True))
    with op.batch_alter_table("instance") as batch:
        batch.add_column(sa.Column("message", sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance") as batch:
        batch.drop_column("message")
    with op.batch_alter_table("app") as batch:
        batch.drop_column("problem")
