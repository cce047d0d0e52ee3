"""Front-door certificates and the local CA in the database: one order per name serves every daemon's door.

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificate",
        sa.Column("hostname", sa.String, primary_key=True),
        sa.Column("hostnames", sa.String, nullable=False),
        sa.Column("source", sa.String, nullable=True),
        sa.Column("chain_pem", sa.String, nullable=True),
        sa.Column("key_sealed", sa.String, nullable=True),
        sa.Column("fingerprint", sa.String, nullable=True),
        sa.Column("issuer", sa.String, nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String, nullable=True),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_seconds", sa.Integer, nullable=True),
        sa.Column("claimed_by", sa.String, nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "local_ca",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("certificate_pem", sa.String, nullable=False),
        sa.Column("key_sealed", sa.String, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("local_ca")
    op.drop_table("certificate")
