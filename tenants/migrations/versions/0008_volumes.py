"""Tenants keep data: volumes with a hard size on one node, apps that mount them, the plan's cap on all of a
tenant's volumes, verified backups of them on the plan's schedule, and managed services (PostgreSQL) bound to
apps, whose secrets reach containers sealed.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from tenants.models import BYTES, UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# plan -> (its volumes' sizes in all, hours between a volume's backups, verified backups kept per volume)
STORAGE = {"small": (1_024, 24, 3), "medium": (10_240, 24, 7), "large": (102_400, 12, 14)}
AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    # Plain ADD COLUMNs (no rebuild on SQLite): a rebuilt `app` would lose AUTOINCREMENT (ids never reused).
    with op.batch_alter_table("plan", recreate="never") as batch:
        batch.add_column(sa.Column("max_storage_mib", sa.Integer, nullable=False, server_default="1024"))
        batch.add_column(sa.Column("backup_every_hours", sa.Integer, nullable=False, server_default="24"))
        batch.add_column(sa.Column("backups_kept", sa.Integer, nullable=False, server_default="7"))
    plan = sa.table(
        "plan", sa.column("name", sa.String), sa.column("max_storage_mib", sa.Integer),
        sa.column("backup_every_hours", sa.Integer), sa.column("backups_kept", sa.Integer),
    )  # fmt: skip
    for name, (storage, every, kept) in STORAGE.items():
        values = {"max_storage_mib": storage, "backup_every_hours": every, "backups_kept": kept}
        op.execute(plan.update().where(plan.c.name == name).values(**values))
    with op.batch_alter_table("app", recreate="never") as batch:
        batch.add_column(sa.Column("volumes", sa.JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("kind", sa.String, nullable=False, server_default="web"))
        batch.add_column(sa.Column("sealed_env", sa.JSON, nullable=False, server_default="{}"))
    op.create_table(
        "volume",
        sa.Column("id", sa.Integer, primary_key=True),
        _cascading("tenant_id", "tenant.id"),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("size_mib", sa.Integer, nullable=False),
        sa.Column("node", sa.String, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("restoring", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("tenant_id", "name"),
        **AUTOINCREMENT,
    )
    op.create_table(
        "service",
        sa.Column("id", sa.Integer, primary_key=True),
        _cascading("tenant_id", "tenant.id"),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("username", sa.String, nullable=False),
        sa.Column("database", sa.String, nullable=False),
        sa.Column("password_encrypted", sa.String, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "name"),
        **AUTOINCREMENT,
    )
    op.create_table(
        "binding",
        sa.Column("id", sa.Integer, primary_key=True),
        _cascading("service_id", "service.id"),
        _cascading("app_id", "app.id"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("service_id", "app_id"),
        **AUTOINCREMENT,
    )
    op.create_table(
        "backup",
        sa.Column("id", sa.Integer, primary_key=True),
        _cascading("tenant_id", "tenant.id"),
        sa.Column("volume", sa.String, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("files", sa.Integer, nullable=False),
        sa.Column("size_bytes", BYTES, nullable=False),  # BIGINT on PostgreSQL; on SQLite INTEGER, as ever
        sa.Column("archive_sha256", sa.String, nullable=True),
        sa.Column("message", sa.String, nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False, index=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        **AUTOINCREMENT,
    )


def _cascading(name: str, target: str) -> sa.Column[int]:
    """A foreign key whose row goes with the row it names."""
    return sa.Column(name, sa.Integer, sa.ForeignKey(target, ondelete="CASCADE"), nullable=False, index=True)


def downgrade() -> None:
    for table in ("backup", "binding", "service", "volume"):
        op.drop_table(table)
    with op.batch_alter_table("app", table_kwargs=AUTOINCREMENT) as batch:  # SQLite rebuilds it: keep ids unique
        for column in ("sealed_env", "kind", "volumes"):
            batch.drop_column(column)
    with op.batch_alter_table("plan") as batch:
        for column in ("backups_kept", "backup_every_hours", "max_storage_mib"):
            batch.drop_column(column)
