"""The key store: one data key per kit, wrapped by a master key, in a database of its own.

It is a separate database on purpose: destroying a kit's data key (crypto-shredding) makes
every copy of its ciphertext unreadable, including database dumps and backups taken before
the erasure, which would otherwise carry the wrapped key along with the data.

Writes read the kit's current key from the store each time (so an instance never encrypts
with a key that another instance destroyed); reads find keys by the id the ciphertext names,
cached in memory after the first unwrap. Within one write (``shared_key_reads``) the key is
read once, not once per copy encrypted (the row, the revision, the cache entry, the outbox).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from healthinfo.common.clock import Clock, utc_now
from healthinfo.common.database import Engines
from healthinfo.crypto.master_keys import MasterKeyring

metadata = MetaData()
DATA_KEYS = Table(
    "data_keys",
    metadata,
    Column("kit_id", String(64), primary_key=True),
    Column("key_id", String(36), nullable=False, unique=True),
    Column("master_key_id", String(64), nullable=False),
    Column("wrapped", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
NONCE_BYTES = 12
# Built once: building a statement costs more CPU than running it from the compiled cache.
_KEY_OF_KIT = select(DATA_KEYS).where(DATA_KEYS.c.kit_id == bindparam("kit_id"))
_KEY_BY_ID = select(DATA_KEYS).where(
    DATA_KEYS.c.kit_id == bindparam("kit_id"), DATA_KEYS.c.key_id == bindparam("key_id")
)


_keys_of_this_write: ContextVar[dict[str, DataKey] | None] = ContextVar(
    "keys_of_this_write", default=None
)


@contextmanager
def shared_key_reads() -> Iterator[None]:
    """Within the block, ``KeyStore.current`` reads each kit's key from the store only once.

    A write encrypts the same answers up to four times; reading the key for each copy cost
    three extra key-store transactions per PATCH and could even mix keys if an erasure ran in
    between. The block is one write: short enough that "read on every write" still holds.
    """
    token = _keys_of_this_write.set({})
    try:
        yield
    finally:
        _keys_of_this_write.reset(token)


class KeyDestroyed(Exception):
    """The data key this ciphertext names no longer exists: the kit was erased."""


@dataclass(frozen=True, slots=True)
class DataKey:
    kit_id: str
    key_id: str
    key: bytes


class KeyStore:
    def __init__(
        self,
        engines: Engines,
        masters: MasterKeyring,
        *,
        cache_size: int = 10_000,
        clock: Clock = utc_now,
    ) -> None:
        self.engines = engines
        self.engine = engines.write
        # A key lookup is one SELECT: on PostgreSQL it needs no transaction around it, and in
        # autocommit it is one round trip instead of BEGIN, SELECT, ROLLBACK (two of a
        # write's three key-store round trips). SQLite's BEGIN is ours (common/database.py)
        # and costs no round trip, so it stays as it is.
        self._lookups = (
            engines.read
            if engines.read.dialect.name == "sqlite"
            else engines.read.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._masters = masters
        self._cache: OrderedDict[str, DataKey] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock

    async def current(self, kit_id: str) -> DataKey:
        """The kit's data key, created on first use (a concurrent creator's key wins).

        Read from the store on every call (a cheap primary-key lookup) rather than from memory,
        so no instance encrypts with a key another instance destroyed in an erasure.
        """
        shared = _keys_of_this_write.get()
        if shared is not None and kit_id in shared:
            return shared[kit_id]
        key = await self._current_from_store(kit_id)
        if shared is not None:
            shared[kit_id] = key
        return key

    async def _current_from_store(self, kit_id: str) -> DataKey:
        async with self._lookups.connect() as conn:
            row = (await conn.execute(_KEY_OF_KIT, {"kit_id": kit_id})).first()
        if row is not None:
            return self._remember(self._unwrap_cached(row))
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(select(DATA_KEYS).where(DATA_KEYS.c.kit_id == kit_id))
            ).first()
            if row is None:
                await conn.execute(_insert_if_absent(conn.dialect.name, self._new_row(kit_id)))
                row = (
                    await conn.execute(select(DATA_KEYS).where(DATA_KEYS.c.kit_id == kit_id))
                ).one()
        return self._remember(self._unwrap(row))

    async def by_id(self, kit_id: str, key_id: str) -> DataKey:
        cached = self._cache.get(key_id)
        if cached is not None and cached.kit_id == kit_id:
            self._cache.move_to_end(key_id)
            return cached
        async with self._lookups.connect() as conn:
            row = (await conn.execute(_KEY_BY_ID, {"kit_id": kit_id, "key_id": key_id})).first()
        if row is None:
            raise KeyDestroyed(kit_id)
        return self._remember(self._unwrap(row))

    async def prefetch(self, kit_ids: list[str]) -> None:
        """Load many kits' keys in one query into the by-id cache, ahead of their decoding.

        For bulk reads (the FHIR Bulk Data export): one round trip a page instead of one a kit.
        Only ``by_id`` (decoding) uses the cache, so writes still read the store every time.
        """
        if not kit_ids:
            return
        async with self._lookups.connect() as conn:
            rows = (
                await conn.execute(select(DATA_KEYS).where(DATA_KEYS.c.kit_id.in_(kit_ids)))
            ).all()
        for row in rows:
            self._remember(self._unwrap_cached(row))

    async def destroy(self, kit_id: str) -> bool:
        """Crypto-shredding: without this key, no copy of the kit's ciphertext can be read."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(DATA_KEYS).where(DATA_KEYS.c.kit_id == kit_id))
        for key_id in [k for k, v in self._cache.items() if v.kit_id == kit_id]:
            del self._cache[key_id]
        shared = _keys_of_this_write.get()
        if shared is not None:
            shared.pop(kit_id, None)
        return bool(result.rowcount)

    async def rewrap(self) -> int:
        """Re-wrap every data key under the active master key; returns how many changed."""
        changed = 0
        async with self.engine.begin() as conn:
            rows = await conn.execute(
                select(DATA_KEYS).where(DATA_KEYS.c.master_key_id != self._masters.active_id)
            )
            for row in rows.fetchall():
                key = self._unwrap(row)
                await conn.execute(
                    update(DATA_KEYS)
                    .where(DATA_KEYS.c.kit_id == row.kit_id)
                    .values(
                        master_key_id=self._masters.active_id,
                        wrapped=self._wrap(key.kit_id, key.key_id, key.key),
                    )
                )
                changed += 1
        return changed

    def _new_row(self, kit_id: str) -> dict[str, object]:
        key_id = str(uuid.uuid4())
        key = AESGCM.generate_key(bit_length=256)
        return {
            "kit_id": kit_id,
            "key_id": key_id,
            "master_key_id": self._masters.active_id,
            "wrapped": self._wrap(kit_id, key_id, key),
            "created_at": self._clock(),
        }

    def _wrap(self, kit_id: str, key_id: str, key: bytes) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._masters.active).encrypt(nonce, key, _aad(kit_id, key_id))
        return base64.b64encode(nonce + sealed).decode()

    def _unwrap_cached(self, row: object) -> DataKey:
        """Unwrapping costs an AES operation; a key id never changes its key, so reuse it."""
        cached = self._cache.get(row.key_id)  # type: ignore[attr-defined]
        return cached if cached is not None else self._unwrap(row)

    def _unwrap(self, row: object) -> DataKey:
        kit_id: str = row.kit_id  # type: ignore[attr-defined]
        key_id: str = row.key_id  # type: ignore[attr-defined]
        raw = base64.b64decode(row.wrapped)  # type: ignore[attr-defined]
        master = self._masters.get(row.master_key_id)  # type: ignore[attr-defined]
        try:
            key = AESGCM(master).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(kit_id, key_id))
        except InvalidTag:
            raise KeyDestroyed(kit_id) from None
        return DataKey(kit_id, key_id, key)

    def _remember(self, key: DataKey) -> DataKey:
        self._cache[key.key_id] = key
        self._cache.move_to_end(key.key_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return key


def _aad(kit_id: str, key_id: str) -> bytes:
    return f"{kit_id}|{key_id}".encode()


def _insert_if_absent(dialect: str, values: dict[str, object]) -> Insert:
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement: Insert = module.insert(DATA_KEYS).values(**values).on_conflict_do_nothing()
    return statement
