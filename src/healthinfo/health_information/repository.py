"""Persistence of health information and its revisions.

Reads use Core statements, not ORM identity-mapped objects: a write that retries after losing
a race must see the row as it is now, not as this session first loaded it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    delete,
    false,
    insert,
    or_,
    select,
    update,
)

from healthinfo.audit import chain
from healthinfo.common.sql import insert_if_absent, rowcount
from healthinfo.common.uow import UnitOfWork
from healthinfo.crypto.keystore import KeyDestroyed
from healthinfo.db.models import HealthInformation, Kit, Revision
from healthinfo.health_information.codec import AnswerCodec
from healthinfo.health_information.model import (
    Answers,
    HealthInformationState,
    RevisionSummary,
    Status,
)
from healthinfo.health_information.search import SearchQuery

CURRENT = cast(Table, HealthInformation.__table__)
REVISIONS = cast(Table, Revision.__table__)
KITS = cast(Table, Kit.__table__)
_INSERT_REVISION = REVISIONS.insert()
# The SET clause comes from the parameters' keys (every column but the key and created_at).
_UPDATE_IF_VERSION = update(CURRENT).where(
    CURRENT.c.kit_id == bindparam("where_kit_id"),
    CURRENT.c.version == bindparam("where_version"),
)

# Every column an update sets (all but the key and the creation time).
_UPDATED_COLUMNS = [c.key for c in CURRENT.columns if c.key not in ("kit_id", "created_at")]
_REVISION_COLUMNS = list(REVISIONS.columns)
# PostgreSQL: the optimistic UPDATE and its revision in one statement (a write's round trip).
_UPDATED = (
    update(CURRENT)
    .where(
        CURRENT.c.kit_id == bindparam("where_kit_id"),
        CURRENT.c.version == bindparam("where_version"),
    )
    .values({key: bindparam(f"hi_{key}", type_=CURRENT.c[key].type) for key in _UPDATED_COLUMNS})
    .returning(CURRENT.c.kit_id)
    .cte("updated")
)
_UPDATE_WITH_REVISION = insert(REVISIONS).from_select(
    _REVISION_COLUMNS,
    select(*(bindparam(f"rev_{c.key}", type_=c.type) for c in _REVISION_COLUMNS)).select_from(
        _UPDATED
    ),
)
# ... and the write's audit event (audit.chain: the head locked by the access query), so a
# won write is one statement: the version check, the update, the revision and the audit link.
_UPDATE_WITH_REVISION_AND_AUDIT = chain.advance_and_insert_after(
    _UPDATE_WITH_REVISION.returning(REVISIONS.c.kit_id).cte("revised")
)


class HealthInformationRepository:
    def __init__(self, *, codec: AnswerCodec) -> None:
        self._codec = codec

    async def get(self, uow: UnitOfWork, kit_id: str) -> HealthInformationState | None:
        row = (await uow.session.execute(select(CURRENT).where(CURRENT.c.kit_id == kit_id))).first()
        return None if row is None else await self.from_row(kit_id, row)

    async def search(
        self,
        uow: UnitOfWork,
        query: SearchQuery,
        *,
        access: ColumnElement[bool],
        after: str | None,
        limit: int,
    ) -> list[tuple[str, HealthInformationState | None]]:
        """Saved health information matching ``query`` on kits ``access`` admits, by kit id.

        Keyset pagination on the primary key (``kit_id > after``): a kit is listed at most
        once across pages however the kits change meanwhile, and none that exists throughout
        is skipped; each page shows the kits as they are when it is read. A row whose kit key
        is destroyed (an erasure between the key's destruction and the rows' deletion, or a
        shredded kit) comes back as ``(kit_id, None)``: it has nothing left to disclose, and one
        such kit must not turn a search of thousands into a 500; the caller still pages past it.
        """
        statement = (
            select(CURRENT)
            .select_from(CURRENT.join(KITS, KITS.c.kit_id == CURRENT.c.kit_id))
            .where(access, *_conditions(query))
            .order_by(CURRENT.c.kit_id)
            .limit(limit)
        )
        if after is not None:
            statement = statement.where(CURRENT.c.kit_id > after)
        rows = (await uow.session.execute(statement)).all()
        return [(row.kit_id, await self._readable_state(row)) for row in rows]

    async def _readable_state(self, row: Any) -> HealthInformationState | None:
        try:
            return await self.from_row(row.kit_id, row)
        except KeyDestroyed:
            return None

    async def from_row(self, kit_id: str, row: Any) -> HealthInformationState:
        """The state of a row holding the current record's columns (this table's, or a write's
        access query's: kits.service)."""
        return HealthInformationState(
            kit_id=row.kit_id,
            questionnaire_id=row.questionnaire_id,
            questionnaire_version=row.questionnaire_version,
            status=Status(row.status),
            answers=await self._codec.decode(kit_id, row.answers),
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
            updated_by=row.updated_by,
            submitted_at=row.submitted_at,
            field_versions=dict(row.field_versions),
        )

    async def questionnaire_of(self, uow: UnitOfWork, kit_id: str) -> tuple[str, str] | None:
        """The (id, version) a kit's saved answers are bound to, without reading them."""
        statement = select(CURRENT.c.questionnaire_id, CURRENT.c.questionnaire_version).where(
            CURRENT.c.kit_id == kit_id
        )
        row = (await uow.session.execute(statement)).first()
        return (row.questionnaire_id, row.questionnaire_version) if row is not None else None

    async def encode(self, state: HealthInformationState) -> str:
        """The answers as stored (encrypted): encoded once per write, for its row, its revision
        and its cache entry (the ``stored`` arguments below)."""
        return await self._codec.encode(state.kit_id, state.answers)

    async def insert_first(
        self, uow: UnitOfWork, state: HealthInformationState, *, stored: str | None = None
    ) -> bool:
        """Create version 1; False when a concurrent writer created it first."""
        return await insert_if_absent(uow, CURRENT, await self._row(state, stored))

    async def update_if_version(
        self,
        uow: UnitOfWork,
        state: HealthInformationState,
        *,
        expected_version: int,
        stored: str | None = None,
    ) -> bool:
        """The optimistic lock: one conditional UPDATE whose row count decides who won."""
        values = await self._row(state, stored)
        del values["kit_id"], values["created_at"]
        values.update(where_kit_id=state.kit_id, where_version=expected_version)
        return rowcount(await uow.session.execute(_UPDATE_IF_VERSION, values)) == 1

    async def update_with_revision(
        self,
        uow: UnitOfWork,
        state: HealthInformationState,
        *,
        expected_version: int,
        changed: list[str],
        channel: str,
        request_id: str | None,
        stored: str | None = None,
        audit: dict[str, Any] | None = None,
    ) -> bool:
        """``update_if_version`` and, when it won, ``add_revision``: one statement on
        PostgreSQL (the revision's INSERT reads the UPDATE's RETURNING, so it exists exactly
        when the update won), two on SQLite.

        ``audit``: a linked audit event's parameters (``chain.link``, PostgreSQL only), written
        by the same statement, exactly when the update won.
        """
        stored = stored if stored is not None else await self.encode(state)
        if uow.session.get_bind().dialect.name != "postgresql":
            assert audit is None, "one-statement audit links are PostgreSQL's"
            won = await self.update_if_version(
                uow, state, expected_version=expected_version, stored=stored
            )
            if won:
                await self.add_revision(
                    uow,
                    state,
                    changed=changed,
                    channel=channel,
                    request_id=request_id,
                    stored=stored,
                )
            return won
        values = await self._row(state, stored)
        parameters = {f"hi_{key}": values[key] for key in _UPDATED_COLUMNS}
        parameters.update(where_kit_id=state.kit_id, where_version=expected_version)
        revision = self._revision_row(state, values["answers"], changed, channel, request_id)
        parameters.update({f"rev_{key}": value for key, value in revision.items()})
        if audit is None:
            return rowcount(await uow.session.execute(_UPDATE_WITH_REVISION, parameters)) == 1
        parameters.update(audit)
        result = await uow.session.execute(_UPDATE_WITH_REVISION_AND_AUDIT, parameters)
        return rowcount(result) == 1

    async def add_revision(
        self,
        uow: UnitOfWork,
        state: HealthInformationState,
        *,
        changed: list[str],
        channel: str,
        request_id: str | None,
        stored: str | None = None,
    ) -> None:
        answers = stored if stored is not None else await self.encode(state)
        row = self._revision_row(state, answers, changed, channel, request_id)
        # Values as parameters, not .values(): the statement stays the same object, so it is
        # neither rebuilt nor re-keyed for the compiled cache on every write.
        await uow.session.execute(_INSERT_REVISION, row)

    @staticmethod
    def _revision_row(
        state: HealthInformationState,
        answers: str,
        changed: list[str],
        channel: str,
        request_id: str | None,
    ) -> dict[str, Any]:
        """The revision of ``state``, its answers as stored (the same ciphertext as the row's)."""
        return {
            "kit_id": state.kit_id,
            "version": state.version,
            "status": state.status.value,
            "answers": answers,
            "changed": changed,
            "at": state.updated_at,
            "by": state.updated_by,
            "channel": channel,
            "request_id": request_id,
        }

    async def revision_answers(self, uow: UnitOfWork, kit_id: str, version: int) -> Answers | None:
        stored = await uow.session.scalar(
            select(REVISIONS.c.answers).where(
                REVISIONS.c.kit_id == kit_id, REVISIONS.c.version == version
            )
        )
        return None if stored is None else await self._codec.decode(kit_id, stored)

    async def get_revision(
        self, uow: UnitOfWork, kit_id: str, version: int, *, created_at: datetime
    ) -> HealthInformationState | None:
        row = (
            await uow.session.execute(
                select(REVISIONS).where(
                    REVISIONS.c.kit_id == kit_id, REVISIONS.c.version == version
                )
            )
        ).first()
        if row is None:
            return None
        submitted_at = await self._first_final_at(uow, kit_id, version)
        return await self._revision_state(kit_id, row, created_at, submitted_at)

    async def revisions_after(
        self, uow: UnitOfWork, kit_id: str, version: int, *, created_at: datetime
    ) -> list[HealthInformationState]:
        """Every revision after ``version``, oldest first, in one query (stream resume)."""
        rows = (
            await uow.session.execute(
                select(REVISIONS)
                .where(REVISIONS.c.kit_id == kit_id, REVISIONS.c.version > version)
                .order_by(REVISIONS.c.version)
            )
        ).all()
        if not rows:
            return []
        first_submitted = (
            await uow.session.execute(
                select(REVISIONS.c.version, REVISIONS.c.at)
                .where(REVISIONS.c.kit_id == kit_id, REVISIONS.c.status == Status.SUBMITTED.value)
                .order_by(REVISIONS.c.version)
                .limit(1)
            )
        ).first()
        return [
            await self._revision_state(
                kit_id,
                row,
                created_at,
                first_submitted.at
                if first_submitted is not None and row.version >= first_submitted.version
                else None,
            )
            for row in rows
        ]

    async def _revision_state(
        self, kit_id: str, row: Any, created_at: datetime, submitted_at: datetime | None
    ) -> HealthInformationState:
        return HealthInformationState(
            kit_id=kit_id,
            questionnaire_id="",
            questionnaire_version="",
            status=Status(row.status),
            answers=await self._codec.decode(kit_id, row.answers),
            version=row.version,
            created_at=created_at,
            updated_at=row.at,
            updated_by=row.by,
            submitted_at=submitted_at,
        )

    async def list_revisions(
        self, uow: UnitOfWork, kit_id: str, *, limit: int, before_version: int | None
    ) -> list[RevisionSummary]:
        query = select(
            REVISIONS.c.version,
            REVISIONS.c.status,
            REVISIONS.c.at,
            REVISIONS.c.by,
            REVISIONS.c.channel,
            REVISIONS.c.changed,
        ).where(REVISIONS.c.kit_id == kit_id)
        if before_version is not None:
            query = query.where(REVISIONS.c.version < before_version)
        rows = await uow.session.execute(query.order_by(REVISIONS.c.version.desc()).limit(limit))
        return [
            RevisionSummary(r.version, Status(r.status), r.at, r.by, r.channel, list(r.changed))
            for r in rows
        ]

    async def all_revisions(self, uow: UnitOfWork, kit_id: str) -> list[dict[str, Any]]:
        """Every revision with its answers, oldest first: for exports."""
        rows = await uow.session.execute(
            select(REVISIONS).where(REVISIONS.c.kit_id == kit_id).order_by(REVISIONS.c.version)
        )
        return [
            {
                "version": r.version,
                "status": r.status,
                "at": r.at,
                "by": r.by,
                "channel": r.channel,
                "changed": list(r.changed),
                "answers": await self._codec.decode(kit_id, r.answers),
            }
            for r in rows
        ]

    async def delete_all(self, uow: UnitOfWork, kit_id: str) -> None:
        await uow.session.execute(delete(REVISIONS).where(REVISIONS.c.kit_id == kit_id))
        await uow.session.execute(delete(CURRENT).where(CURRENT.c.kit_id == kit_id))

    async def _first_final_at(self, uow: UnitOfWork, kit_id: str, version: int) -> datetime | None:
        at: datetime | None = await uow.session.scalar(
            select(REVISIONS.c.at)
            .where(
                REVISIONS.c.kit_id == kit_id,
                REVISIONS.c.version <= version,
                REVISIONS.c.status == Status.SUBMITTED.value,
            )
            .order_by(REVISIONS.c.version)
            .limit(1)
        )
        return at

    async def _row(self, state: HealthInformationState, stored: str | None) -> dict[str, Any]:
        return {
            "kit_id": state.kit_id,
            "questionnaire_id": state.questionnaire_id,
            "questionnaire_version": state.questionnaire_version,
            "status": state.status.value,
            "answers": stored if stored is not None else await self.encode(state),
            "field_versions": state.field_versions,
            "version": state.version,
            "created_at": state.created_at,
            "updated_at": state.updated_at,
            "updated_by": state.updated_by,
            "submitted_at": state.submitted_at,
        }


_COMPARE = {
    "ge": CURRENT.c.updated_at.__ge__,
    "gt": CURRENT.c.updated_at.__gt__,
    "le": CURRENT.c.updated_at.__le__,
    "lt": CURRENT.c.updated_at.__lt__,
}


def _conditions(query: SearchQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.statuses is not None:
        statuses = sorted(status.value for status in query.statuses)
        conditions.append(CURRENT.c.status.in_(statuses) if statuses else false())
    if query.questionnaires is not None:
        refs = [
            CURRENT.c.questionnaire_id == ref.id
            if ref.version is None
            else and_(
                CURRENT.c.questionnaire_id == ref.id,
                CURRENT.c.questionnaire_version == ref.version,
            )
            for ref in query.questionnaires
        ]
        conditions.append(or_(*refs) if refs else false())
    conditions += [_COMPARE[bound.operator](bound.at) for bound in query.updated]
    return conditions
