"""Apps sleep when idle: the plan's idle time before an app sleeps (off for `large`), and an app's own.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

IDLE_STOP_SECONDS = {"small": 900, "medium": 900, "large": 0}
AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    # Plain ADD COLUMNs (no rebuild on SQLite): a rebuilt `app` would lose AUTOINCREMENT (ids never reused).
    with op.batch_alter_table("plan", recreate="never") as batch:
        batch.add_column(sa.Column("idle_stop_seconds", sa.Integer, nullable=False, server_default="900"))
    plan = sa.table("plan", sa.column("name", sa.String), sa.column("idle_stop_seconds", sa.Integer))
    for name, seconds in IDLE_STOP_SECONDS.items():
        op.execute(plan.update().where(plan.c.name == name).values(idle_stop_seconds=seconds))
    with op.batch_alter_table("app", recreate="never") as batch:
        batch.add_column(sa.Column("idle_stop_seconds", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("app", table_kwargs=AUTOINCREMENT) as batch:  # SQLite rebuilds it: keep ids unique
        batch.drop_column("idle_stop_seconds")
    with op.batch_alter_table("plan") as batch:
        batch.drop_column("idle_stop_seconds")
