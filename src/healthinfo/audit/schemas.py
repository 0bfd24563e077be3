"""Documented shape of audit events."""

from __future__ import annotations

from healthinfo.common.schemas import Document


class AuditEventDoc(Document):
    id: str
    at: str
    actor: str | None
    action: str
    channel: str
    request_id: str | None
    version_before: int | None
    version_after: int | None
    changed: list[str]
    outcome: str
    client_address: str | None
    user_agent: str | None
    reason: str | None = None
    reason_erased: bool = False


class AuditEventList(Document):
    items: list[AuditEventDoc]
    next_cursor: str | None
