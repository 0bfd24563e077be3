"""One-time claim codes: how the user of an ownerless kit that holds answers proves it is theirs.

A kit whose answers were written by an admin or imported from the legacy system has no owner;
naming its id must not be enough to own it (and read the answers). An admin hands out a code
(``POST /v1/kits/{kitId}/claim-codes``, or the legacy import prints one per kit), the user
claims with it (``POST /v1/kits/{kitId}/claim`` ``{"claimCode": …}``). Only the code's sha256,
bound to the kit id, is stored; claiming deletes it, so it works once; it expires.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, update

from healthinfo.common.clock import Clock, utc_now
from healthinfo.common.sql import insert_if_absent, rowcount
from healthinfo.common.uow import UnitOfWork
from healthinfo.db.models import KitClaimCode

CODES = cast(Table, KitClaimCode.__table__)
CODE_BYTES = 18  # 144 bits: not guessable, short enough to print on a letter (24 characters)
DEFAULT_TTL = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class IssuedCode:
    kit_id: str
    code: str
    expires_at: datetime


def code_hash(kit_id: str, code: str) -> str:
    return hashlib.sha256(f"{kit_id}\n{code}".encode()).hexdigest()


class ClaimCodes:
    def __init__(self, *, ttl: timedelta = DEFAULT_TTL, clock: Clock = utc_now) -> None:
        self._ttl = ttl
        self._clock = clock

    async def issue(self, uow: UnitOfWork, kit_id: str, issued_by: str) -> IssuedCode:
        """A new code for the kit; any earlier code of the kit stops working."""
        now = self._clock()
        code = secrets.token_urlsafe(CODE_BYTES)
        await self.forget(uow, kit_id)
        row = {
            "kit_id": kit_id,
            "code_hash": code_hash(kit_id, code),
            "expires_at": now + self._ttl,
            "created_at": now,
            "created_by": issued_by,
        }
        if not await insert_if_absent(uow, CODES, row):  # a concurrent issuer's: ours wins
            await uow.session.execute(update(CODES).where(CODES.c.kit_id == kit_id).values(row))
        return IssuedCode(kit_id, code, now + self._ttl)

    async def redeem(self, uow: UnitOfWork, kit_id: str, code: str) -> bool:
        """Use the code up: True when it was the kit's current, unexpired code."""
        result = await uow.session.execute(
            delete(CODES).where(
                CODES.c.kit_id == kit_id,
                CODES.c.code_hash == code_hash(kit_id, code),
                CODES.c.expires_at > self._clock(),
            )
        )
        return rowcount(result) == 1

    async def forget(self, uow: UnitOfWork, kit_id: str) -> None:
        await uow.session.execute(delete(CODES).where(CODES.c.kit_id == kit_id))
