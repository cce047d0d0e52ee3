"""Tenants bring their own apps: registry credentials, the images each tenant owns, builds from source, and
the plan's caps on one build.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from tenants.models import BYTES, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# plan -> (a build's CPU in millicores, its memory in MiB)
BUILD_LIMITS = {"small": (500, 512), "medium": (1_000, 1_024), "large": (2_000, 2_048)}
AUTOINCREMENT = {"sqlite_autoincrement": True}


def _tenant_id() -> sa.Column[int]:
    return sa.Column(
        "tenant_id", sa.Integer, sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False, index=True
    )


def upgrade() -> None:
    with op.batch_alter_table("plan") as batch:
        batch.add_column(sa.Column("build_cpu_millicores", sa.Integer, nullable=False, server_default="500"))
        batch.add_column(sa.Column("build_memory_mib", sa.Integer, nullable=False, server_default="512"))
    plan = sa.table(
        "plan", sa.column("name", sa.String), sa.column("build_cpu_millicores", sa.Integer),
        sa.column("build_memory_mib", sa.Integer),
    )  # fmt: skip
    for name, (cpu, memory) in BUILD_LIMITS.items():
        op.execute(plan.update().where(plan.c.name == name).values(build_cpu_millicores=cpu, build_memory_mib=memory))
    with op.batch_alter_table("app") as batch:
        batch.add_column(sa.Column("commit", sa.String, nullable=True))
    op.create_table(
        "registrycredential",
        sa.Column("id", sa.Integer, primary_key=True),
        _tenant_id(),
        sa.Column("host", sa.String, nullable=False),
        sa.Column("username", sa.String, nullable=False),
        sa.Column("password_encrypted", sa.String, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "host"),
        **AUTOINCREMENT,
    )
    op.create_table(
        "tenantimage",
        sa.Column("id", sa.Integer, primary_key=True),
        _tenant_id(),
        sa.Column("reference", sa.String, nullable=False),
        sa.Column("image_id", sa.String, nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("size_bytes", BYTES, nullable=False),  # BIGINT on PostgreSQL; on SQLite INTEGER, as ever
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "reference"),
        **AUTOINCREMENT,
    )
    op.create_table(
        "build",
        sa.Column("id", sa.Integer, primary_key=True),
        _tenant_id(),
        sa.Column("app", sa.String, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("commit", sa.String, nullable=True),
        sa.Column("image", sa.String, nullable=True),
        sa.Column("revision", sa.Integer, nullable=True),
        sa.Column("message", sa.String, nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False, index=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        **AUTOINCREMENT,
    )


def downgrade() -> None:
    for table in ("build", "tenantimage", "registrycredential"):
        op.drop_table(table)
    with op.batch_alter_table("app") as batch:
        batch.drop_column("commit")
    with op.batch_alter_table("plan") as batch:
        batch.drop_column("build_memory_mib")
        batch.drop_column("build_cpu_millicores")
