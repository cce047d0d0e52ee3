"""Tenants keep data: volumes with a hard size on one node, apps that mount them, and the plan's cap on all of
a tenant's volumes.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from tenants.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STORAGE_MIB = {"small": 1_024, "medium": 10_240, "large": 102_400}  # plan -> its volumes' sizes in all
AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    # Plain ADD COLUMNs (no rebuild on SQLite): a rebuilt `app` would lose AUTOINCREMENT (ids never reused).
    with op.batch_alter_table("plan", recreate="never") as batch:
        batch.add_column(sa.Column("max_storage_mib", sa.Integer, nullable=False, server_default="1024"))
    plan = sa.table("plan", sa.column("name", sa.String), sa.column("max_storage_mib", sa.Integer))
    for name, storage in STORAGE_MIB.items():
        op.execute(plan.update().where(plan.c.name == name).values(max_storage_mib=storage))
    with op.batch_alter_table("app", recreate="never") as batch:
        batch.add_column(sa.Column("volumes", sa.JSON, nullable=False, server_default="[]"))
    op.create_table(
        "volume",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("size_mib", sa.Integer, nullable=False),
        sa.Column("node", sa.String, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "name"),
        **AUTOINCREMENT,
    )


def downgrade() -> None:
    op.drop_table("volume")
    with op.batch_alter_table("app", table_kwargs=AUTOINCREMENT) as batch:  # SQLite rebuilds it: keep ids unique
        batch.drop_column("volumes")
    with op.batch_alter_table("plan") as batch:
        batch.drop_column("max_storage_mib")
