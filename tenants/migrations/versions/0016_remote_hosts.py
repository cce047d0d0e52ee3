"""Remote hosts: a node reached over SSH records the host key it must show and where its engine's socket is.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("node", recreate="never") as batch:
        batch.add_column(sa.Column("host_key", sa.String, nullable=True))
        batch.add_column(sa.Column("docker_socket", sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("node") as batch:
        batch.drop_column("docker_socket")
        batch.drop_column("host_key")
