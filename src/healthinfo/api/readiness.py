"""The checks that decide readiness: would a write succeed on this instance right now?

A write needs three things: the database answers, its schema is at the code's Alembic head
(otherwise the write meets a missing table or column), and the key store answers at its own
head with master keys that open its data keys (every write encrypts with a kit's data key,
every read decrypts). The database is asked on every probe (one
``SELECT 1``); the two schema checks are remembered for ``SCHEMA_CHECK_SECONDS``, since a schema
changes only when someone migrates, and probes arrive every few seconds from every balancer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from sqlalchemy import select, text

from healthinfo.common.uow import is_database_unavailable
from healthinfo.crypto.keystore import DATA_KEYS, KeyDestroyed
from healthinfo.crypto.master_keys import MasterKeyError
from healthinfo.db import migrate
from healthinfo.db.schema_state import schema_state
from healthinfo.errors import Unavailable
from healthinfo.services import Services

SCHEMA_CHECK_SECONDS = 5.0
OK = "ok"
# The checks a 503 is decided by; the others (cache, events, rate limits, replicas) are reported.
REQUIRED = ("database", "schema", "keystore")
_ANY_KEY = select(DATA_KEYS.c.kit_id, DATA_KEYS.c.key_id).limit(1)


class Remembered:
    """A check's answer, reused until it is ``ttl`` seconds old (both answers: ok and not)."""

    def __init__(
        self,
        check: Callable[[], Awaitable[str]],
        *,
        ttl: float = SCHEMA_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._ttl = ttl
        self._clock = clock
        self._value: str | None = None
        self._expires = 0.0

    async def get(self) -> str:
        now = self._clock()
        if self._value is None or now >= self._expires:
            self._value = await self._check()
            self._expires = now + self._ttl
        return self._value


class ReadinessChecks:
    def __init__(self, svc: Services, *, ttl: float = SCHEMA_CHECK_SECONDS) -> None:
        self._svc = svc
        self._schema = Remembered(self._schema_check, ttl=ttl)
        self._keystore = Remembered(self._keystore_check, ttl=ttl)

    async def required(self) -> dict[str, str]:
        """``database``, ``schema``, ``keystore``: each ``ok`` or why a write would fail."""
        database = await self._database_check()
        schema = await self._schema.get() if database == OK else "unknown (no database)"
        return {"database": database, "schema": schema, "keystore": await self._keystore.get()}

    async def _database_check(self) -> str:
        try:
            async with self._svc.uows.read() as uow:
                await uow.session.execute(text("SELECT 1"))
        except (Unavailable, OSError):
            self._svc.metrics.db_errors.labels("readiness").inc()
            return "unavailable"
        return OK

    async def _schema_check(self) -> str:
        try:
            return (await schema_state(self._svc.uows.engines.write)).describe()
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            return "unknown (no database)"

    async def _keystore_check(self) -> str:
        if self._svc.keystore is None:
            return OK  # no encryption configured in this composition: nothing to be unusable
        try:
            state = await schema_state(
                self._svc.keystore.engine, location=migrate.KEYSTORE_MIGRATIONS_DIR
            )
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            return "unusable (unreachable)"
        if not state.at_head:
            return f"unusable ({state.describe()})"
        return await self._master_keys_check()

    async def _master_keys_check(self) -> str:
        """One stored data key must open with the configured master keys: a wrong
        HEALTHINFO_MASTER_KEYS makes every read of encrypted answers fail."""
        keystore = self._svc.keystore
        assert keystore is not None
        try:
            async with keystore.engine.connect() as conn:
                row = (await conn.execute(_ANY_KEY)).first()
            if row is not None:
                await keystore.by_id(row.kit_id, row.key_id)
        except (KeyDestroyed, MasterKeyError):
            return "unusable (the master keys do not open its data keys)"
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            return "unusable (unreachable)"
        return OK


def is_ready(checks: dict[str, str]) -> bool:
    return all(checks.get(name) == OK for name in REQUIRED)
