"""Published questionnaire definitions: stored in the database, cached in the process.

A published ``(id, version)`` never changes (only its status: active or retired), so the
in-process cache of parsed, compiled definitions needs no invalidation: after a version's
first use a worker answers every lookup of it from memory, never with a query. What does
change, which version is the newest active one, is only needed to bind a kit (its first
write) and for the list routes, and is read from the database each time so that every
worker sees a publication or a retirement at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import Table, select, update

from healthinfo.audit.service import AuditEntry, AuditLog
from healthinfo.common.clock import Clock, utc_now
from healthinfo.common.context import RequestContext
from healthinfo.common.sql import insert_if_absent, rowcount
from healthinfo.common.uow import UnitOfWork, UnitOfWorkFactory
from healthinfo.db.models import QuestionnaireDefinition
from healthinfo.errors import NotFound, QuestionnaireVersionExists, Unavailable
from healthinfo.questionnaires.model import Questionnaire

DEFINITIONS = cast(Table, QuestionnaireDefinition.__table__)
ACTIVE: Final = "active"
RETIRED: Final = "retired"
PUBLISH: Final = "questionnaire.publish"
RETIRE: Final = "questionnaire.retire"
AUDIT_SUBJECT: Final = "questionnaire-definitions"
"""The audit trail's ``kit_id`` for publications and retirements: one chain, read by admins at
``/v1/kits/questionnaire-definitions/audit-events`` (the events name ``id|version`` only)."""


def canonical_json(q: Questionnaire) -> str:
    return json.dumps(q.to_public_dict(), sort_keys=True, separators=(",", ":"))


def content_hash(q: Questionnaire) -> str:
    return hashlib.sha256(canonical_json(q).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class VersionInfo:
    questionnaire_id: str
    version: str
    title: str
    status: str
    published_at: datetime
    content_hash: str

    def to_dict(self) -> dict[str, Any]:
        from healthinfo.common.clock import to_rfc3339

        return {
            "id": self.questionnaire_id,
            "version": self.version,
            "title": self.title,
            "status": self.status,
            "publishedAt": to_rfc3339(self.published_at),
            "contentHash": self.content_hash,
        }


@dataclass(frozen=True, slots=True)
class Published:
    questionnaire: Questionnaire
    created: bool


class QuestionnaireStore:
    """Every published version; ``shipped`` are published at start-up when absent."""

    def __init__(
        self,
        shipped: Iterable[Questionnaire],
        *,
        audit: AuditLog,
        default_id: str,
        clock: Clock = utc_now,
    ) -> None:
        self._shipped = tuple(shipped)
        self._audit = audit
        self._clock = clock
        self.default_id = default_id
        self._versions: dict[tuple[str, str], Questionnaire] = {
            (q.id, q.version): q for q in self._shipped
        }

    @property
    def shipped(self) -> tuple[Questionnaire, ...]:
        return self._shipped

    def cached(self, questionnaire_id: str, version: str) -> Questionnaire | None:
        """A version already in memory (every shipped one, and any looked up before)."""
        return self._versions.get((questionnaire_id, version))

    def shipped_default(self) -> Questionnaire:
        """The newest shipped version of the default questionnaire (when none is published)."""
        versions = [q for q in self._shipped if q.id == self.default_id]
        if not versions:
            raise NotFound(f"No questionnaire {self.default_id!r}.")
        return versions[-1]

    def require_cached(self, questionnaire_id: str, version: str) -> Questionnaire:
        """A version the caller knows was looked up already (a kit's, after its write)."""
        cached = self.cached(questionnaire_id, version)
        if cached is None:
            raise NotFound(f"No questionnaire {questionnaire_id!r} version {version!r}.")
        return cached

    async def load(
        self, uows: UnitOfWorkFactory, questionnaire_id: str, version: str
    ) -> Questionnaire:
        """``get`` outside a transaction: from memory, or one read the first time."""
        cached = self.cached(questionnaire_id, version)
        if cached is not None:
            return cached
        async with uows.read() as uow:
            return await self.get(uow, questionnaire_id, version)

    async def publish_shipped(self, uow: UnitOfWork) -> None:
        """Publish the definitions shipped in the package that are not in the database yet."""
        for q in self._shipped:
            await insert_if_absent(uow, DEFINITIONS, self._row(q, by=None))

    async def publish(self, uow: UnitOfWork, ctx: RequestContext, q: Questionnaire) -> Published:
        """201 for a new ``(id, version)``, 200 for the same content again, else 409."""
        digest = content_hash(q)
        existing = await self._row_of(uow, q.id, q.version)
        if existing is None and await insert_if_absent(
            uow, DEFINITIONS, self._row(q, by=ctx.actor.user_id)
        ):
            self._versions[(q.id, q.version)] = q
            entry = AuditEntry(action=PUBLISH, kit_id=AUDIT_SUBJECT, changed=(_ref(q),))
            await self._audit.record(uow, ctx, entry)
            return Published(q, True)
        existing = existing or await self._row_of(uow, q.id, q.version)
        if existing is None or existing.content_hash != digest:
            raise QuestionnaireVersionExists(q.id, q.version)
        return Published(await self.get(uow, q.id, q.version), False)

    async def retire(
        self, uow: UnitOfWork, ctx: RequestContext, questionnaire_id: str, version: str
    ) -> VersionInfo:
        """No new kit is bound to it; kits bound to it keep working. Retiring twice is a no-op."""
        row = await self._row_of(uow, questionnaire_id, version)
        if row is None:
            raise NotFound(f"No questionnaire {questionnaire_id!r} version {version!r}.")
        if row.status != RETIRED:
            statement = (
                update(DEFINITIONS)
                .where(DEFINITIONS.c.seq == row.seq, DEFINITIONS.c.status == ACTIVE)
                .values(status=RETIRED, retired_at=self._clock())
            )
            if rowcount(await uow.session.execute(statement)) == 1:
                entry = AuditEntry(
                    action=RETIRE, kit_id=AUDIT_SUBJECT, changed=(f"{questionnaire_id}|{version}",)
                )
                await self._audit.record(uow, ctx, entry)
            row = await self._row_of(uow, questionnaire_id, version)
            assert row is not None
        return _info(row)

    async def get(self, uow: UnitOfWork, questionnaire_id: str, version: str) -> Questionnaire:
        """One version, from memory after its first use."""
        cached = self._versions.get((questionnaire_id, version))
        if cached is not None:
            return cached
        row = await self._row_of(uow, questionnaire_id, version)
        if row is None:
            raise NotFound(f"No questionnaire {questionnaire_id!r} version {version!r}.")
        return self._remember(row)

    async def newest_active(self, uow: UnitOfWork, questionnaire_id: str) -> Questionnaire:
        """The version a kit is bound to when it does not name one."""
        statement = (
            select(DEFINITIONS.c.version)
            .where(
                DEFINITIONS.c.questionnaire_id == questionnaire_id, DEFINITIONS.c.status == ACTIVE
            )
            .order_by(DEFINITIONS.c.seq.desc())
            .limit(1)
        )
        version = (await uow.session.execute(statement)).scalar_one_or_none()
        if (
            version is None
            and uow.writable
            and any(q.id == questionnaire_id for q in self._shipped)
        ):
            # Start-up publishes the shipped definitions; this covers a database emptied since.
            await self.publish_shipped(uow)
            version = (await uow.session.execute(statement)).scalar_one_or_none()
        if version is None:
            raise NotFound(f"No active version of questionnaire {questionnaire_id!r}.")
        return await self.get(uow, questionnaire_id, version)

    async def status(self, uow: UnitOfWork, questionnaire_id: str, version: str) -> str | None:
        row = await self._row_of(uow, questionnaire_id, version)
        return row.status if row is not None else None

    async def versions(self, uow: UnitOfWork, questionnaire_id: str) -> list[VersionInfo]:
        """Every version, oldest first; NotFound when none was published under the id."""
        statement = (
            select(DEFINITIONS)
            .where(DEFINITIONS.c.questionnaire_id == questionnaire_id)
            .order_by(DEFINITIONS.c.seq)
        )
        rows = (await uow.session.execute(statement)).all()
        if not rows:
            raise NotFound(f"No questionnaire {questionnaire_id!r}.")
        return [_info(row) for row in rows]

    async def summaries(
        self, uow: UnitOfWork, *, limit: int, after: str | None
    ) -> list[dict[str, Any]]:
        """One entry per questionnaire id, ordered by id: title and newest version, status.

        ``status`` is ``active`` while any version is; ``latestVersion`` is the newest active
        version (the newest of all when every one is retired).
        """
        statement = select(
            DEFINITIONS.c.questionnaire_id,
            DEFINITIONS.c.version,
            DEFINITIONS.c.title,
            DEFINITIONS.c.status,
        ).order_by(DEFINITIONS.c.questionnaire_id, DEFINITIONS.c.seq)
        if after is not None:
            statement = statement.where(DEFINITIONS.c.questionnaire_id > after)
        by_id: dict[str, dict[str, Any]] = {}
        for row in (await uow.session.execute(statement)).all():
            entry = by_id.get(row.questionnaire_id)
            if entry is None:
                if len(by_id) == limit:
                    break
                entry = by_id[row.questionnaire_id] = {"id": row.questionnaire_id}
            if row.status == ACTIVE or entry.get("status") != ACTIVE:
                entry.update(title=row.title, latestVersion=row.version, status=row.status)
        return list(by_id.values())

    async def search(
        self,
        uow: UnitOfWork,
        *,
        ids: frozenset[str] | None = None,
        versions: frozenset[str] | None = None,
        statuses: frozenset[str] | None = None,
        after: int | None = None,
        limit: int,
    ) -> list[tuple[int, VersionInfo]]:
        """Published versions matching every condition given (None: any), in publication
        order, with the publication's sequence number for keyset pagination (``after``)."""
        statement = select(DEFINITIONS).order_by(DEFINITIONS.c.seq).limit(limit)
        if ids is not None:
            statement = statement.where(DEFINITIONS.c.questionnaire_id.in_(sorted(ids)))
        if versions is not None:
            statement = statement.where(DEFINITIONS.c.version.in_(sorted(versions)))
        if statuses is not None:
            statement = statement.where(DEFINITIONS.c.status.in_(sorted(statuses)))
        if after is not None:
            statement = statement.where(DEFINITIONS.c.seq > after)
        rows = (await uow.session.execute(statement)).all()
        return [(row.seq, _info(row)) for row in rows]

    def _remember(self, row: Any) -> Questionnaire:
        q = Questionnaire.from_dict(json.loads(row.definition))
        return self._versions.setdefault((q.id, q.version), q)

    async def _row_of(self, uow: UnitOfWork, questionnaire_id: str, version: str) -> Any:
        statement = select(DEFINITIONS).where(
            DEFINITIONS.c.questionnaire_id == questionnaire_id, DEFINITIONS.c.version == version
        )
        return (await uow.session.execute(statement)).first()

    def _row(self, q: Questionnaire, *, by: str | None) -> dict[str, Any]:
        return {
            "questionnaire_id": q.id,
            "version": q.version,
            "title": q.title[:255],
            "status": ACTIVE,
            "content_hash": content_hash(q),
            "definition": canonical_json(q),
            "published_at": self._clock(),
            "published_by": by,
            "retired_at": None,
        }


def _ref(q: Questionnaire) -> str:
    return f"{q.id}|{q.version}"


def _info(row: Any) -> VersionInfo:
    return VersionInfo(
        questionnaire_id=row.questionnaire_id,
        version=row.version,
        title=row.title,
        status=row.status,
        published_at=row.published_at,
        content_hash=row.content_hash,
    )


logger = logging.getLogger(__name__)


class ShippedPublisher:
    """Start-up: publish the definitions shipped in the package that the database lacks."""

    def __init__(self, store: QuestionnaireStore, uows: UnitOfWorkFactory) -> None:
        self._store = store
        self._uows = uows

    async def start(self) -> None:
        """Never stops start-up: with the database down or not migrated yet, the service must
        start and say so on /health/ready (503); the definitions are published on first use
        then (``newest_active``)."""
        try:
            async with self._uows.write() as uow:
                await self._store.publish_shipped(uow)
        except Unavailable as exc:
            logger.warning("questionnaires.shipped.deferred", extra={"cause": str(exc)})

    async def stop(self) -> None:
        return None
