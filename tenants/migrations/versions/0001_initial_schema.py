"""Initial schema: plans (seeded with small/medium/large), tenants, apps, SSH keys, API tokens, events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# (name, max apps, max instances, total CPU in millicores, total memory in MiB)
DEFAULT_PLANS = [
    ("small", 3, 6, 2_000, 1_024),
    ("medium", 10, 20, 8_000, 8_192),
    ("large", 50, 100, 32_000, 65_536),
]


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _tenant_fk(nullable: bool) -> sa.Column:
    return sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=nullable)


def upgrade() -> None:
    plan = op.create_table(
        "plan",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("max_apps", sa.Integer, nullable=False),
        sa.Column("max_instances", sa.Integer, nullable=False),
        sa.Column("max_cpu_millicores", sa.Integer, nullable=False),
        sa.Column("max_memory_mib", sa.Integer, nullable=False),
    )
    op.bulk_insert(
        plan,
        [
            dict(zip(("name", "max_apps", "max_instances", "max_cpu_millicores", "max_memory_mib"), row, strict=False))
            for row in DEFAULT_PLANS
        ],
    )
    op.create_table(
        "tenant",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("plan", sa.String, sa.ForeignKey("plan.name"), nullable=False),
        sa.Column("isolation", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        _time("created_at"),
    )
    op.create_index("ix_tenant_name", "tenant", ["name"], unique=True)
    op.create_table(
        "app",
        sa.Column("id", sa.Integer, primary_key=True),
        _tenant_fk(nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("image", sa.String, nullable=False),
        sa.Column("command", sa.JSON, nullable=True),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.Column("cpu_millicores", sa.Integer, nullable=False),
        sa.Column("memory_mib", sa.Integer, nullable=False),
        sa.Column("env", sa.JSON, nullable=False),
        sa.Column("health_path", sa.String, nullable=True),
        sa.Column("hostnames", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        _time("created_at"),
        _time("updated_at"),
        sa.UniqueConstraint("tenant_id", "name"),
    )
    op.create_index("ix_app_tenant_id", "app", ["tenant_id"])
    op.create_table(
        "sshkey",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("fingerprint", sa.String, nullable=False),
        sa.Column("public_key", sa.String, nullable=False),
        sa.Column("comment", sa.String, nullable=False),
        sa.Column("role", sa.String, nullable=False),
        _tenant_fk(nullable=True),
        _time("created_at"),
    )
    op.create_index("ix_sshkey_fingerprint", "sshkey", ["fingerprint"], unique=True)
    op.create_index("ix_sshkey_tenant_id", "sshkey", ["tenant_id"])
    op.create_table(
        "apitoken",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("role", sa.String, nullable=False),
        _tenant_fk(nullable=True),
        _time("created_at"),
        _time("expires_at", nullable=True),
    )
    op.create_index("ix_apitoken_token_hash", "apitoken", ["token_hash"], unique=True)
    op.create_index("ix_apitoken_tenant_id", "apitoken", ["tenant_id"])
    op.create_table(
        "event",
        sa.Column("id", sa.Integer, primary_key=True),
        _time("time"),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("tenant", sa.String, nullable=True),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_event_time", "event", ["time"])
    op.create_index("ix_event_tenant", "event", ["tenant"])


def downgrade() -> None:
    for table in ("event", "apitoken", "sshkey", "app", "tenant", "plan"):
        op.drop_table(table)
