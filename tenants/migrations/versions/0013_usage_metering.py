"""Usage metering: what each tenant's apps used, rolled up per hour and kind of node, and in all (for `/metrics`);
gone with the tenant. And where the meter's count of each instance stands (`usage_position`).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from tenants.models import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_hour",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("app", sa.String, nullable=False),
        sa.Column("hour", UTCDateTime(), nullable=False, index=True),
        sa.Column("node_kind", sa.String, nullable=False),
        sa.Column("cpu_seconds", sa.Float, nullable=False),
        sa.Column("memory_mib_hours", sa.Float, nullable=False),
        sa.Column("storage_gib_hours", sa.Float, nullable=False),
        sa.Column("instance_hours", sa.Float, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("bytes_in", sa.BigInteger, nullable=False),
        sa.Column("bytes_out", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("tenant_id", "app", "hour", "node_kind"),
        sqlite_autoincrement=True,  # ids never reused
    )
    op.create_table(
        "usage_total",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("app", sa.String, nullable=False),
        sa.Column("node_kind", sa.String, nullable=False),
        sa.Column("cpu_seconds", sa.Float, nullable=False),
        sa.Column("memory_mib_hours", sa.Float, nullable=False),
        sa.Column("storage_gib_hours", sa.Float, nullable=False),
        sa.Column("instance_hours", sa.Float, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("bytes_in", sa.BigInteger, nullable=False),
        sa.Column("bytes_out", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("tenant_id", "app", "node_kind"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "usage_position",
        sa.Column("instance", sa.String, primary_key=True),
        sa.Column("container_id", sa.String, nullable=False),
        sa.Column("cgroup", sa.BigInteger, nullable=False),
        sa.Column("cpu_ns", sa.BigInteger, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usage_position")
    op.drop_table("usage_total")
    op.drop_table("usage_hour")
