"""Apps choose what the front door does for them over HTTPS: redirect plain HTTP to https, send HSTS.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    # An expression default (false()) makes batch mode rebuild the table on SQLite, and the copy would lose
    # AUTOINCREMENT (ids never reused); ADD COLUMN ... DEFAULT 0 needs no rebuild.
    with op.batch_alter_table("app", recreate="never") as batch:
        batch.add_column(sa.Column("https_redirect", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("hsts", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("app", table_kwargs=AUTOINCREMENT) as batch:  # SQLite rebuilds it: keep ids unique
        batch.drop_column("hsts")
        batch.drop_column("https_redirect")
