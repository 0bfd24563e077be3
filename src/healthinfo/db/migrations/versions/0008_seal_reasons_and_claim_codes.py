"""Seal amendment reasons with the kit's data key, and store one-time claim codes (hashed).

Reasons: every plain-text ``audit_events.reason`` is encrypted through the answer codec that
``healthinfo migrate`` (or start-up) hands to Alembic (as 0006 does for answers), so the
reason is shredded with the kit's key by an erasure like the answers. A reason of a kit that
was erased after it was written is sealed with a throw-away key: the erasure already promised
it was gone. Changing a reason changes its event's hash, so the chains of the kits concerned
are computed again (a frozen copy of ``audit.chain`` as of 0005-0007: sha256 links). The
downgrade decrypts the reasons it can (the others become null) and re-chains the same way.

Claim codes: ``kit_claim_codes`` holds at most one code per kit, as a sha256 hash, with its
expiry; claiming with it deletes it (one use). See ``kits/claim_codes.py``.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.util import await_only

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

PREFIX = "enc1:"
GENESIS = "0" * 64
ERASE = "health-information.erase"
EVENT_COLUMNS = (
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
EVENTS = sa.table("audit_events", *(sa.column(name) for name in EVENT_COLUMNS))
HEADS = sa.table(
    "audit_chain_heads", sa.column("kit_id"), sa.column("prev_hash"), sa.column("last_hash")
)


def upgrade() -> None:
    op.create_table(
        "kit_claim_codes",
        sa.Column("kit_id", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("kit_id", name=op.f("pk_kit_claim_codes")),
    )
    _rewrite_reasons(seal=True)


def downgrade() -> None:
    _rewrite_reasons(seal=False)
    op.drop_table("kit_claim_codes")


def _codec() -> Any:
    codec = context.config.attributes.get("codec")
    if codec is None:
        raise RuntimeError("sealing audit reasons needs the answer codec: run `healthinfo migrate`")
    return codec


def _rewrite_reasons(*, seal: bool) -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(EVENTS.c.id, EVENTS.c.kit_id, EVENTS.c.reason)
        .where(EVENTS.c.reason.is_not(None))
        .order_by(EVENTS.c.id)
    ).fetchall()
    erased_after = _last_erasure_by_kit(bind)
    touched: set[str] = set()
    for row in rows:
        if row.reason.startswith(PREFIX) == seal:
            continue
        stored: str | None
        if seal:
            shredded = erased_after.get(row.kit_id, 0) > row.id
            stored = _shredded(row.reason) if shredded else _seal(row.kit_id, row.reason)
        else:
            stored = _unseal(row.kit_id, row.reason)
        bind.execute(EVENTS.update().where(EVENTS.c.id == row.id).values(reason=stored))
        touched.add(row.kit_id)
    for kit_id in sorted(touched):
        _rechain(bind, kit_id)


def _last_erasure_by_kit(bind: Any) -> dict[str, int]:
    rows = bind.execute(
        sa.select(EVENTS.c.kit_id, sa.func.max(EVENTS.c.id).label("last"))
        .where(EVENTS.c.action == ERASE, EVENTS.c.outcome == "ok")
        .group_by(EVENTS.c.kit_id)
    ).fetchall()
    return {row.kit_id: row.last for row in rows}


def _seal(kit_id: str, reason: str) -> str:
    return str(await_only(_codec().encode(kit_id, {"reason": reason})))


def _shredded(reason: str) -> str:
    """The stored form of a sealed reason, under a key nobody keeps: unreadable, as erased."""
    nonce = os.urandom(12)
    sealed = AESGCM(AESGCM.generate_key(bit_length=256)).encrypt(nonce, reason.encode(), None)
    return f"{PREFIX}{uuid.uuid4()}:{base64.b64encode(nonce + sealed).decode()}"


def _unseal(kit_id: str, stored: str) -> str | None:
    from healthinfo.crypto.keystore import KeyDestroyed

    try:
        reason = await_only(_codec().decode(kit_id, stored))["reason"]
    except KeyDestroyed:
        return None
    return reason if isinstance(reason, str) else None


def _rechain(bind: Any, kit_id: str) -> None:
    events = bind.execute(
        sa.select(EVENTS).where(EVENTS.c.kit_id == kit_id).order_by(EVENTS.c.id)
    ).fetchall()
    prev = before_last = GENESIS
    for event in events:
        digest = hashlib.sha256(prev.encode() + _canonical(event)).hexdigest()
        bind.execute(
            EVENTS.update().where(EVENTS.c.id == event.id).values(prev_hash=prev, hash=digest)
        )
        before_last, prev = prev, digest
    bind.execute(
        HEADS.update().where(HEADS.c.kit_id == kit_id).values(prev_hash=before_last, last_hash=prev)
    )


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
