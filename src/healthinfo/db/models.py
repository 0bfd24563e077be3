"""ORM models: every table of the service, in one module so Alembic sees the whole schema.

Answers are stored as text produced by ``AnswerCodec`` (see ``health_information.codec``), never
as queryable JSON: the codec is where encryption at rest plugs in, with the kit id as
associated data, without the services noticing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

KIT_ID_LENGTH = 64
USER_ID_LENGTH = 255


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, also on SQLite (which stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Kit(Base):
    """A test kit; owned by whoever claimed it (``owner_id`` null until then)."""

    __tablename__ = "kits"

    kit_id: Mapped[str] = mapped_column(String(KIT_ID_LENGTH), primary_key=True)
    owner_id: Mapped[str | None] = mapped_column(String(USER_ID_LENGTH))
    claimed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    # The questionnaire version a claim bound the kit to, before anything is saved (null: the
    # first write decides); once saved, health_information's columns are the binding.
    questionnaire_id: Mapped[str | None] = mapped_column(String(64))
    questionnaire_version: Mapped[str | None] = mapped_column(String(16))


class KitMember(Base):
    """A user other than the owner with a role (``editor`` or ``viewer``) on a kit."""

    __tablename__ = "kit_members"

    kit_id: Mapped[str] = mapped_column(
        ForeignKey("kits.kit_id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(USER_ID_LENGTH), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[datetime]
    added_by: Mapped[str] = mapped_column(String(USER_ID_LENGTH))


class HealthInformation(Base):
    """The current state of a kit's answers; ``version`` is the optimistic-lock column.

    ``field_versions`` maps each question id to the version that last changed it, so a
    ``baseVersion`` write finds its conflicts without reading history.
    """

    __tablename__ = "health_information"

    kit_id: Mapped[str] = mapped_column(
        ForeignKey("kits.kit_id", ondelete="CASCADE"), primary_key=True
    )
    questionnaire_id: Mapped[str] = mapped_column(String(64))
    questionnaire_version: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    answers: Mapped[str] = mapped_column(Text)
    field_versions: Mapped[dict[str, Any]]
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(USER_ID_LENGTH))
    submitted_at: Mapped[datetime | None]


class Revision(Base):
    """Every accepted version, whole: history, resume after reconnect, three-way merges."""

    __tablename__ = "revisions"

    kit_id: Mapped[str] = mapped_column(
        ForeignKey("kits.kit_id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    answers: Mapped[str] = mapped_column(Text)
    changed: Mapped[list[str]]
    at: Mapped[datetime]
    by: Mapped[str] = mapped_column(String(USER_ID_LENGTH))
    channel: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(128))


class IdempotencyKey(Base):
    """A client's Idempotency-Key and the response it got, scoped to the user who sent it.

    ``state`` is ``processing`` (a lease until ``locked_until``) or ``done``; the response is
    stored in the same transaction as the write it answers.
    """

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(String(USER_ID_LENGTH), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    locked_until: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict[str, Any] | None]
    response_body: Mapped[str | None] = mapped_column(Text)


class AuditEvent(Base):
    """Append-only record of every write and refused write; question ids, never values.

    Not a foreign key to ``kits``: refused attempts on kits that do not exist are audited too,
    and the audit trail must outlive an erasure.
    """

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_kit_id_id", "kit_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    at: Mapped[datetime]
    kit_id: Mapped[str] = mapped_column(String(KIT_ID_LENGTH))
    actor: Mapped[str | None] = mapped_column(String(USER_ID_LENGTH))
    action: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(128))
    version_before: Mapped[int | None] = mapped_column(Integer)
    version_after: Mapped[int | None] = mapped_column(Integer)
    changed: Mapped[list[str]]
    outcome: Mapped[str] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    # The audit key that linked this event (HMAC); null: a legacy unkeyed link (before 0009).
    key_id: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """The newest link of each kit's audit hash chain, locked by whoever appends to it.

    ``prev_hash`` is ``last_hash`` as it was before the last append (null until a kit's first
    append after revision 0007): PostgreSQL's ``RETURNING`` shows only new values (before 18),
    and the one-statement append (``audit.chain``) needs the old one for the event it writes.
    """

    __tablename__ = "audit_chain_heads"

    kit_id: Mapped[str] = mapped_column(String(KIT_ID_LENGTH), primary_key=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    last_hash: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(Integer)


class OutboxEvent(Base):
    """An event for the lab's API, written in the same transaction as the change it reports.

    ``payload`` is the exact request body, fixed when the event is recorded (text made by
    ``forwarding.outbox.encode_payload`` and passed through the payload codec), so answers
    stored later can never change what is sent. ``kit_sequence`` numbers a kit's events 1, 2,
    3…: event n+1 is sent only after event n was delivered. The retry state (``attempts``,
    ``next_attempt_at``) and the claim (``lease_owner`` until ``leased_until``) live here, so
    they survive a crash of any process. ``state`` is ``pending``, ``delivered`` or ``dead``.
    """

    __tablename__ = "outbox_events"
    __table_args__ = (
        UniqueConstraint("kit_id", "kit_sequence", name="uq_outbox_events_kit_id_kit_sequence"),
        Index("ix_outbox_events_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_outbox_events_state_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    event_type: Mapped[str] = mapped_column(String(64))
    kit_id: Mapped[str] = mapped_column(ForeignKey("kits.kit_id", ondelete="CASCADE"))
    kit_sequence: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime]
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    first_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    leased_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    dead_at: Mapped[datetime | None]


class KitClaimCode(Base):
    """A one-time code that lets its holder claim an ownerless kit holding answers.

    Handed out by an admin (``POST /v1/kits/{kitId}/claim-codes``) or by the legacy import;
    only its sha256 is stored, and claiming with it deletes it. One code per kit: issuing a
    new one replaces the old.
    """

    __tablename__ = "kit_claim_codes"

    kit_id: Mapped[str] = mapped_column(String(KIT_ID_LENGTH), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(USER_ID_LENGTH))


class QuestionnaireDefinition(Base):
    """One published ``(id, version)`` of a questionnaire: immutable but for its ``status``.

    ``definition`` is the canonical JSON (``Questionnaire.to_public_dict``) and
    ``content_hash`` its SHA-256, so publishing the same content again is recognised without
    parsing. ``seq`` orders publications: the newest active version is the highest.
    """

    __tablename__ = "questionnaire_definitions"
    __table_args__ = (
        UniqueConstraint(
            "questionnaire_id", "version", name="uq_questionnaire_definitions_id_version"
        ),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    questionnaire_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    content_hash: Mapped[str] = mapped_column(String(64))
    definition: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime]
    published_by: Mapped[str | None] = mapped_column(String(USER_ID_LENGTH))
    retired_at: Mapped[datetime | None]


class ExportJob(Base):
    """A FHIR Bulk Data export (``fhir/bulk``): its request, its progress cursor and its lease.

    The cursor (``phase`` and ``cursor``: the last resource key written) and the counts are
    updated in the same transaction as the page they describe (``ExportPart``), so a worker
    killed at any point resumes after the last committed page: no kit is written twice or
    skipped. ``active`` is 1 while the job is queued or running and null afterwards; the unique
    index on (requester, active) is what makes "at most one running export per requester" hold
    across processes (NULLs never collide).
    """

    __tablename__ = "export_jobs"
    __table_args__ = (
        UniqueConstraint("requester", "active", name="uq_export_jobs_requester_active"),
        Index("ix_export_jobs_state_leased_until", "state", "leased_until"),
        Index("ix_export_jobs_expires_at", "expires_at"),
    )

    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    requester: Mapped[str] = mapped_column(String(USER_ID_LENGTH))
    active: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    request_url: Mapped[str] = mapped_column(Text)
    types: Mapped[list[str]]
    since: Mapped[datetime | None]
    statuses: Mapped[list[str]]
    transaction_time: Mapped[datetime]
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    phase: Mapped[int] = mapped_column(Integer)
    cursor: Mapped[str | None] = mapped_column(String(KIT_ID_LENGTH))
    parts: Mapped[int] = mapped_column(Integer)
    exported: Mapped[int] = mapped_column(Integer)
    total: Mapped[int | None] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    leased_until: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(255))


class ExportPart(Base):
    """One committed page of an export's output: encrypted NDJSON lines of one resource type.

    The output file of a type is its parts in ``seq`` order. Stored in the database, not in
    files, so that a page and the job's cursor commit together (exactly once after a crash)
    and so that every serve process and worker, on any host, sees the same files.
    """

    __tablename__ = "export_parts"

    job_id: Mapped[str] = mapped_column(
        ForeignKey("export_jobs.job_id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer)
    data: Mapped[str] = mapped_column(Text)
