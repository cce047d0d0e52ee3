"""One running build per app, whichever daemon runs it: a partial unique index. Builds of one app left running
side by side by daemons before it (each held only its own builds apart) are failed but the newest.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

RUNNING = sa.text("state = 'building'")


def upgrade() -> None:
    op.execute(
        "UPDATE build SET state = 'failed', message = 'another build of the app ran beside it; build again', "
        "finished_at = CURRENT_TIMESTAMP "
        "WHERE state = 'building' AND id NOT IN "
        "(SELECT MAX(id) FROM build WHERE state = 'building' GROUP BY tenant_id, app)"
    )
    op.create_index(
        "build_one_running", "build", ["tenant_id", "app"], unique=True, sqlite_where=RUNNING, postgresql_where=RUNNING
    )


def downgrade() -> None:
    op.drop_index("build_one_running", table_name="build")
