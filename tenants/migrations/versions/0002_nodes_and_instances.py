"""Nodes (Docker engines) and instances (running copies of apps, as the reconciler sees them).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("driver", sa.String, nullable=False),
        sa.Column("docker_url", sa.String, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("cpu_millicores", sa.Integer, nullable=False),
        sa.Column("memory_mib", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "instance",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("app_id", sa.Integer, sa.ForeignKey("app.id", ondelete="CASCADE"), nullable=False),
        sa.Column("node", sa.String, nullable=False),
        sa.Column("container_id", sa.String, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("endpoint", sa.String, nullable=True),
        sa.Column("restarts", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_health", sa.String, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_instance_app_id", "instance", ["app_id"])


def downgrade() -> None:
    op.drop_table("instance")
    op.drop_table("node")
