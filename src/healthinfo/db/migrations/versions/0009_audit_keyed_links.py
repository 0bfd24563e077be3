"""Key the audit chain links (HMAC with a key held outside the database): record each key id.

Upgrade adds ``audit_events.key_id``; events already stored keep their unkeyed links (null key
id) and verify as a legacy prefix of their chain: the first keyed event's HMAC covers the last
unkeyed hash, so they cannot be rewritten once a keyed event follows, and the checkpoints pin
them (docs/security.md). No re-link here: the migration would need the audit key, and would
bless whatever an attacker had already done to the unkeyed chains.

Downgrade re-links every keyed event the unkeyed way of 0005, so the chains verify with the
code of 0007, and drops the column.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
COLUMNS = (
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
    "key_id",
)


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("key_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    _relink_unkeyed()
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("key_id")


def _as_utc(value: Any) -> datetime:
    moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _canonical(row: Any) -> bytes:
    """Frozen copy of the canonical form of 0005 (which the keyed links hash too)."""
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


def _relink_unkeyed() -> None:
    """From each kit's first keyed event on, recompute ``sha256(prev + canonical)``."""
    bind = op.get_bind()
    events = sa.table("audit_events", *(sa.column(name) for name in COLUMNS))
    heads = sa.table(
        "audit_chain_heads", *(sa.column(n) for n in ("kit_id", "prev_hash", "last_hash"))
    )
    keyed_kits = sa.select(events.c.kit_id).where(events.c.key_id.is_not(None)).distinct()
    rows = bind.execute(
        sa.select(events)
        .where(events.c.kit_id.in_(keyed_kits))
        .order_by(events.c.kit_id, events.c.id)
    ).fetchall()
    state: dict[str, tuple[str, str, bool]] = {}  # kit -> (prev of last, last, relinking)
    for row in rows:
        _before, prev, relinking = state.get(row.kit_id, (GENESIS, GENESIS, False))
        relinking = relinking or row.key_id is not None
        digest = row.hash
        if relinking:
            digest = hashlib.sha256(prev.encode() + _canonical(row)).hexdigest()
            bind.execute(
                events.update()
                .where(events.c.id == row.id)
                .values(prev_hash=prev, hash=digest, key_id=None)
            )
        state[row.kit_id] = (prev, digest, relinking)
    for kit_id, (before, last, _) in state.items():
        bind.execute(
            heads.update().where(heads.c.kit_id == kit_id).values(prev_hash=before, last_hash=last)
        )
