"""Several daemons on one database: each one's row (`daemon`: who leads, who stands by) and what they must share
(`installation`: the platform's id, which its containers carry, and the fingerprint of the key its secrets are
sealed with); what each daemon's front door last saw of each app's traffic (`door_activity`: the leader puts
an app to sleep only when idle at every door); and which daemon runs a build.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

from tenants.models import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daemon",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
        sa.Column("leading_since", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "installation",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("platform_id", sa.String, nullable=False),
        sa.Column("key_fingerprint", sa.String, nullable=False),
    )
    op.create_table(
        "door_activity",
        sa.Column("daemon", sa.String, sa.ForeignKey("daemon.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("tenant", sa.String, primary_key=True),
        sa.Column("app", sa.String, primary_key=True),
        sa.Column("last_request_at", UTCDateTime(), nullable=True),
        sa.Column("in_flight", sa.Integer, nullable=False),
    )
    # A plain ADD COLUMN (no rebuild on SQLite): a rebuilt `build` would lose AUTOINCREMENT (ids never reused).
    with op.batch_alter_table("build", recreate="never") as batch:
        batch.add_column(sa.Column("daemon", sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("build", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("daemon")
    op.drop_table("door_activity")
    op.drop_table("installation")
    op.drop_table("daemon")
