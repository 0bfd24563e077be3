"""Chain audit events by hash (tamper evidence), including the events already stored.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def _as_utc(value: Any) -> datetime:
    moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _canonical(row: Any) -> bytes:
    """Frozen copy of healthinfo.audit.chain.canonical as of this revision."""
    changed = row.changed if isinstance(row.changed, list) else json.loads(row.changed)
    document = {
        "eventId": row.event_id,
        "at": _as_utc(row.at).isoformat(timespec="microseconds"),
        "kitId": row.kit_id,
        "actor": row.actor,
        "action": row.action,
        "channel": row.channel,
        "requestId": row.request_id,
        "versionBefore": row.version_before,
        "versionAfter": row.version_after,
        "changed": list(changed),
        "outcome": row.outcome,
        "clientAddress": row.client_address,
        "userAgent": row.user_agent,
        "reason": row.reason,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    heads = op.create_table(
        "audit_chain_heads",
        sa.Column("kit_id", sa.String(length=64), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("kit_id", name=op.f("pk_audit_chain_heads")),
    )
    _chain_existing_events(heads)


def _chain_existing_events(heads: sa.Table) -> None:
    bind = op.get_bind()
    events = sa.table(
        "audit_events",
        *(
            sa.column(name)
            for name in (
                "id",
                "event_id",
                "at",
                "kit_id",
                "actor",
                "action",
                "channel",
                "request_id",
                "version_before",
                "version_after",
                "changed",
                "outcome",
                "client_address",
                "user_agent",
                "reason",
                "prev_hash",
                "hash",
            )
        ),
    )
    state: dict[str, tuple[str, int]] = {}
    rows = bind.execute(sa.select(events).order_by(events.c.kit_id, events.c.id)).fetchall()
    for row in rows:
        prev, length = state.get(row.kit_id, (GENESIS, 0))
        digest = hashlib.sha256(prev.encode() + _canonical(row)).hexdigest()
        bind.execute(
            events.update().where(events.c.id == row.id).values(prev_hash=prev, hash=digest)
        )
        state[row.kit_id] = (digest, length + 1)
    if state:
        op.bulk_insert(
            heads,
            [{"kit_id": k, "last_hash": h, "length": n} for k, (h, n) in state.items()],
        )


def downgrade() -> None:
    op.drop_table("audit_chain_heads")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
