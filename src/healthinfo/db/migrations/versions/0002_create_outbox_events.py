"""Create the outbox of events forwarded to the lab's API.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 09:12:40.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("kit_id", sa.String(length=64), nullable=False),
        sa.Column("kit_sequence", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["kit_id"],
            ["kits.kit_id"],
            name=op.f("fk_outbox_events_kit_id_kits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_events_event_id")),
        sa.UniqueConstraint(
            "kit_id", "kit_sequence", name=op.f("uq_outbox_events_kit_id_kit_sequence")
        ),
    )
    op.create_index(
        "ix_outbox_events_state_next_attempt_at",
        "outbox_events",
        ["state", "next_attempt_at"],
        unique=False,
    )
    op.create_index("ix_outbox_events_state_id", "outbox_events", ["state", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_events_state_id", table_name="outbox_events")
    op.drop_index("ix_outbox_events_state_next_attempt_at", table_name="outbox_events")
    op.drop_table("outbox_events")
