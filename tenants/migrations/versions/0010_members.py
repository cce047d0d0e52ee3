"""People in a tenant: members with a role (owner, developer, viewer), whose SSH keys and API tokens act with it.
A tenant's keys and tokens of no member stay its owner's.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from tenants.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

AUTOINCREMENT = {"sqlite_autoincrement": True}
CREDENTIALS = ("sshkey", "apitoken")


def upgrade() -> None:
    op.create_table(
        "member",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("role", sa.String, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "name"),
        **AUTOINCREMENT,
    )
    for table in CREDENTIALS:
        counted = _sequence(table)
        # SQLite rebuilds the table for the constraint; AUTOINCREMENT kept, and its counter put back below
        with op.batch_alter_table(table, table_kwargs=AUTOINCREMENT) as batch:
            batch.add_column(sa.Column("member_id", sa.Integer, nullable=True))
            batch.create_foreign_key(f"fk_{table}_member_id", "member", ["member_id"], ["id"], ondelete="CASCADE")
            batch.create_index(f"ix_{table}_member_id", ["member_id"])
        _set_sequence(table, counted)


def _sequence(table: str) -> int | None:
    """The highest id SQLite's AUTOINCREMENT has given in `table` (None elsewhere): a rebuilt table starts over
    from the highest id left in it, and a deleted token's id would come back."""
    if op.get_bind().dialect.name != "sqlite":
        return None
    return op.get_bind().execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}).scalar()


def _set_sequence(table: str, counted: int | None) -> None:
    if counted is not None:
        op.execute(
            sa.text("UPDATE sqlite_sequence SET seq = max(seq, :n) WHERE name = :t").bindparams(n=counted, t=table)
        )


def downgrade() -> None:
    for table in CREDENTIALS:
        op.drop_index(f"ix_{table}_member_id", table)
        with op.batch_alter_table(table, table_kwargs=AUTOINCREMENT) as batch:
            batch.drop_column("member_id")
    op.drop_table("member")
