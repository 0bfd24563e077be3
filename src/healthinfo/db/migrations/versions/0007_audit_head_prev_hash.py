"""Keep the previous hash on each audit chain head, so PostgreSQL appends in one statement.

The append computes the new link in SQL and inserts the event from the head's ``RETURNING``;
before PostgreSQL 18 ``RETURNING`` shows only new values, so the head keeps the hash it had
before its last append. Existing heads get null: only the next append reads it, after setting
it.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_chain_heads") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_chain_heads") as batch:
        batch.drop_column("prev_hash")
