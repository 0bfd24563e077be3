"""The idempotency-key store: claim a key, complete it with the write, replay it later.

A key is claimed in a short transaction of its own (state ``processing``, with a lease), so a
concurrent duplicate sees it and gets 409 instead of running the write twice. The response is
stored by ``complete`` *inside the write's transaction*: the write and its stored response
commit together or not at all. A request that crashed leaves a ``processing`` row whose lease
expires, after which the key can be used again. Keys live 24 hours (configurable); expired
rows are deleted by ``purge_expired``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, select, update

from healthinfo.common.clock import Clock, utc_now
from healthinfo.common.sql import insert_if_absent, rowcount
from healthinfo.common.uow import UnitOfWork, UnitOfWorkFactory
from healthinfo.crypto.keystore import KeyDestroyed
from healthinfo.db.models import IdempotencyKey
from healthinfo.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from healthinfo.health_information.codec import AnswerCodec

KEYS = cast(Table, IdempotencyKey.__table__)
PROCESSING = "processing"
DONE = "done"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: str


class IdempotencyStore:
    def __init__(
        self,
        *,
        uows: UnitOfWorkFactory,
        codec: AnswerCodec,
        retention: timedelta = timedelta(hours=24),
        lease: timedelta = timedelta(seconds=60),
        clock: Clock = utc_now,
    ) -> None:
        self._uows = uows
        self._codec = codec
        self._retention = retention
        self._lease = lease
        self._clock = clock

    async def begin(
        self, user_id: str, key: str, fingerprint: str, *, kit_id: str
    ) -> StoredResponse | None:
        """Claim the key for this request, or return the response to replay.

        Raises ``IdempotencyKeyReused`` (a different request) or ``IdempotencyKeyInUse``.
        """
        async with self._uows.write() as uow:
            now = self._clock()
            values = {
                "user_id": user_id,
                "key": key,
                "fingerprint": fingerprint,
                "state": PROCESSING,
                "locked_until": now + self._lease,
                "expires_at": now + self._retention,
            }
            if await insert_if_absent(uow, KEYS, values):
                return None
            row = (await uow.session.execute(select(KEYS).where(*self._is(user_id, key)))).one()
            expired = row.expires_at <= now or (row.state == PROCESSING and row.locked_until <= now)
            if expired and await self._take_over(uow, row, values):
                return None
            if row.fingerprint != fingerprint:
                raise IdempotencyKeyReused()
            if row.state == PROCESSING:
                raise IdempotencyKeyInUse()
            try:
                body = await self._codec.decode(kit_id, row.response_body)
            except KeyDestroyed:  # the kit was erased since: nothing left to replay
                await self._take_over(uow, row, values)
                return None
            return StoredResponse(row.response_status, dict(row.response_headers), body["body"])

    async def complete(
        self, uow: UnitOfWork, user_id: str, key: str, response: StoredResponse, *, kit_id: str
    ) -> None:
        """Store the response in the caller's transaction: it commits with the write.

        The body holds answers, so it is encrypted with the kit's key like any stored answer.
        """
        stored_body = await self._codec.encode(kit_id, {"body": response.body})
        await uow.session.execute(
            update(KEYS)
            .where(*self._is(user_id, key))
            .values(
                state=DONE,
                response_status=response.status,
                response_headers=response.headers,
                response_body=stored_body,
            )
        )

    async def complete_alone(
        self, user_id: str, key: str, response: StoredResponse, *, kit_id: str
    ) -> None:
        """For refusals: the write rolled back, the refusal is still the answer to replay."""
        async with self._uows.write() as uow:
            await self.complete(uow, user_id, key, response, kit_id=kit_id)

    async def release(self, user_id: str, key: str) -> None:
        """Forget a key whose request failed without an answer worth replaying (503, crash)."""
        async with self._uows.write() as uow:
            await uow.session.execute(
                delete(KEYS).where(*self._is(user_id, key), KEYS.c.state == PROCESSING)
            )

    async def purge_expired(self) -> int:
        async with self._uows.write() as uow:
            result = await uow.session.execute(
                delete(KEYS).where(KEYS.c.expires_at <= self._clock())
            )
            return rowcount(result)

    async def _take_over(self, uow: UnitOfWork, row: Any, values: dict[str, Any]) -> bool:
        result = await uow.session.execute(
            update(KEYS)
            .where(
                *self._is(row.user_id, row.key),
                KEYS.c.state == row.state,
                KEYS.c.locked_until == row.locked_until,
            )
            .values(
                **{k: v for k, v in values.items() if k not in ("user_id", "key")},
                response_status=None,
                response_headers=None,
                response_body=None,
            )
        )
        return rowcount(result) == 1

    @staticmethod
    def _is(user_id: str, key: str) -> tuple[Any, Any]:
        return (KEYS.c.user_id == user_id, KEYS.c.key == key)
