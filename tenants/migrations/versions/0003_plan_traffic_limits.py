"""Plans gain the gateway's per-tenant limits: a request rate (token bucket) and a request body size.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# plan -> (requests per second, burst, largest request body in MiB)
LIMITS = {"small": (100, 200, 10), "medium": (1_000, 2_000, 100), "large": (50_000, 100_000, 1_024)}


def upgrade() -> None:
    with op.batch_alter_table("plan") as batch:
        batch.add_column(sa.Column("requests_per_second", sa.Integer, nullable=False, server_default="100"))
        batch.add_column(sa.Column("burst", sa.Integer, nullable=False, server_default="200"))
        batch.add_column(sa.Column("max_body_mib", sa.Integer, nullable=False, server_default="10"))
    plan = sa.table(
        "plan",
        sa.column("name", sa.String),
        sa.column("requests_per_second", sa.Integer),
        sa.column("burst", sa.Integer),
        sa.column("max_body_mib", sa.Integer),
    )
    for name, (rate, burst, body) in LIMITS.items():
        op.execute(
            plan.update().where(plan.c.name == name).values(requests_per_second=rate, burst=burst, max_body_mib=body)
        )


def downgrade() -> None:
    with op.batch_alter_table("plan") as batch:
        for column in ("max_body_mib", "burst", "requests_per_second"):
            batch.drop_column(column)
