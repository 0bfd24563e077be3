"""Reading an export's resources a page at a time, in key order, and rendering them as NDJSON.

``QuestionnaireResponse`` pages walk ``health_information`` by kit id (its primary key), so a
page costs the same however many kits there are and memory holds one page. Only rows that
exist are read: an erased kit has no row (and its data key is gone, so a kit erased while its
page is read is skipped, not exported). Resources changed after the job's ``transactionTime``
are left to the next export (``_since`` = this one's ``transactionTime``), so a series of
exports has neither gaps nor repeats.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from sqlalchemy import Table, func, or_, select

from healthinfo.common.uow import UnitOfWork, UnitOfWorkFactory
from healthinfo.crypto.keystore import KeyDestroyed, KeyStore
from healthinfo.db.models import HealthInformation, QuestionnaireDefinition
from healthinfo.errors import Unavailable
from healthinfo.fhir.bulk.request import QUESTIONNAIRE, QUESTIONNAIRE_RESPONSE
from healthinfo.fhir.bulk.store import Job
from healthinfo.fhir.mapping import questionnaire_to_fhir, response_to_fhir
from healthinfo.health_information.codec import AnswerCodec
from healthinfo.health_information.model import HealthInformationState, Status
from healthinfo.questionnaires.store import QuestionnaireStore

CURRENT = cast(Table, HealthInformation.__table__)
DEFINITIONS = cast(Table, QuestionnaireDefinition.__table__)
T = TypeVar("T")


@dataclass(slots=True)
class SourcePage:
    """``scanned``: rows read (fewer than the page size: the type is exhausted); ``last_key``:
    the cursor after this page; ``lines``: NDJSON lines; ``kits``: (kit id, version) exported."""

    scanned: int = 0
    last_key: str | None = None
    lines: list[bytes] = field(default_factory=list)
    kits: list[tuple[str, int]] = field(default_factory=list)


class ExportSource:
    def __init__(
        self,
        *,
        uows: UnitOfWorkFactory,
        codec: AnswerCodec,
        questionnaires: QuestionnaireStore,
        keystore: KeyStore | None = None,
    ) -> None:
        self._uows = uows
        self._codec = codec
        self._keystore = keystore  # prefetches a page's data keys in one query
        self._questionnaires = questionnaires
        self._replica_turn = 0

    async def _read(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        """On a replica when one is configured (a bulk read spares the primary), else on the
        primary; a replica that cannot be reached falls back to the primary. A replica that
        lags may miss changes made within its lag before ``transactionTime`` (docs/fhir.md)."""
        if self._uows.replica_count:
            index = self._replica_turn % self._uows.replica_count
            self._replica_turn += 1
            try:
                async with self._uows.replica(index) as uow:
                    return await work(uow)
            except Unavailable:
                pass
        async with self._uows.read() as uow:
            return await work(uow)

    async def count(self, job: Job) -> int:
        """How many resources the job will write, about (for ``X-Progress``)."""

        async def work(uow: UnitOfWork) -> int:
            total = 0
            if QUESTIONNAIRE in job.types:
                total += int(
                    await uow.session.scalar(
                        select(func.count()).select_from(DEFINITIONS).where(*_definitions(job))
                    )
                    or 0
                )
            if QUESTIONNAIRE_RESPONSE in job.types:
                total += int(
                    await uow.session.scalar(
                        select(func.count()).select_from(CURRENT).where(*_responses(job))
                    )
                    or 0
                )
            return total

        return await self._read(work)

    async def page(self, job: Job, *, limit: int) -> SourcePage:
        kind = job.types[job.phase]
        if kind == QUESTIONNAIRE:
            return await self._questionnaire_page(job, limit)
        return await self._response_page(job, limit)

    async def _response_page(self, job: Job, limit: int) -> SourcePage:
        statement = select(CURRENT).where(*_responses(job)).order_by(CURRENT.c.kit_id).limit(limit)
        if job.cursor is not None:
            statement = statement.where(CURRENT.c.kit_id > job.cursor)

        async def work(uow: UnitOfWork) -> SourcePage:
            page = SourcePage()
            rows = (await uow.session.execute(statement)).all()
            if self._keystore is not None:
                await self._keystore.prefetch([row.kit_id for row in rows])
            for row in rows:
                page.scanned += 1
                page.last_key = row.kit_id
                try:
                    answers = await self._codec.decode(row.kit_id, row.answers)
                except KeyDestroyed:
                    continue  # erased after the page's snapshot: never exported
                state = _state(row, answers)
                q = await self._questionnaires.get(
                    uow, state.questionnaire_id, state.questionnaire_version
                )
                page.lines.append(_line(response_to_fhir(state, q)))
                page.kits.append((row.kit_id, row.version))
            return page

        return await self._read(work)

    async def _questionnaire_page(self, job: Job, limit: int) -> SourcePage:
        statement = (
            select(DEFINITIONS.c.seq, DEFINITIONS.c.questionnaire_id, DEFINITIONS.c.version)
            .where(*_definitions(job))
            .order_by(DEFINITIONS.c.seq)
            .limit(limit)
        )
        if job.cursor is not None:
            statement = statement.where(DEFINITIONS.c.seq > int(job.cursor))

        async def work(uow: UnitOfWork) -> SourcePage:
            page = SourcePage()
            for row in (await uow.session.execute(statement)).all():
                page.scanned += 1
                page.last_key = str(row.seq)
                q = await self._questionnaires.get(uow, row.questionnaire_id, row.version)
                page.lines.append(_line(questionnaire_to_fhir(q)))
            return page

        return await self._read(work)


def _responses(job: Job) -> list[Any]:
    conditions: list[Any] = [CURRENT.c.updated_at <= job.transaction_time]
    if job.since is not None:
        conditions.append(CURRENT.c.updated_at > job.since)
    if job.statuses:
        conditions.append(CURRENT.c.status.in_(job.statuses))
    return conditions


def _definitions(job: Job) -> list[Any]:
    conditions: list[Any] = [DEFINITIONS.c.published_at <= job.transaction_time]
    if job.since is not None:
        conditions.append(
            or_(DEFINITIONS.c.published_at > job.since, DEFINITIONS.c.retired_at > job.since)
        )
    return conditions


def _state(row: Any, answers: dict[str, Any]) -> HealthInformationState:
    return HealthInformationState(
        kit_id=row.kit_id,
        questionnaire_id=row.questionnaire_id,
        questionnaire_version=row.questionnaire_version,
        status=Status(row.status),
        answers=answers,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
        submitted_at=row.submitted_at,
    )


_dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _line(resource: dict[str, Any]) -> bytes:
    return (_dumps(resource) + "\n").encode()
