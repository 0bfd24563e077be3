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
