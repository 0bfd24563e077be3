"""Caching a kit's health information, validated against the database on every read.

The service reads the current version (and the record's creation time) in the same query that
decides access, and only trusts a cached entry with exactly that version and creation time.
So a failed cache write, a stale, evicted, poisoned or garbage entry, or an entry left over
from before an erasure can never be served: it is a miss. The staleness bound is zero; the
cache saves fetching and decoding the answers, never correctness.

Entries hold answers through the ``AnswerCodec``, so encryption at rest covers the cache too.

With Redis, a small in-process layer (``near``) sits in front of it: a Redis round trip through
redis-py cost more CPU than the database read it saves (bench/RESULTS.md), and the version
check makes a local copy exactly as safe as the shared one. Redis still carries entries between
instances; the near layer only saves asking it again for a version this process already holds.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from healthinfo.common.flags import ON, Rollout
from healthinfo.crypto.keystore import KeyDestroyed
from healthinfo.health_information.codec import AnswerCodec
from healthinfo.health_information.model import HealthInformationState, Status
from healthinfo.infra.cache import CacheEntry, MemoryCache
from healthinfo.infra.metrics import Metrics
from healthinfo.infra.resilient_cache import ResilientCache

logger = logging.getLogger(__name__)
KEY_PREFIX = "hi:v1:"


class HealthInformationCache:
    """``None`` as the cache turns caching off (every lookup a miss, nothing stored)."""

    def __init__(
        self,
        cache: ResilientCache | None,
        *,
        codec: AnswerCodec,
        metrics: Metrics,
        rollout: Rollout = ON,
        near: MemoryCache | None = None,
    ) -> None:
        self._cache = cache
        self._near = near
        self._rollout = rollout
        self._codec = codec
        self._metrics = metrics

    @property
    def enabled(self) -> bool:
        return self._cache is not None

    async def lookup(
        self, kit_id: str, *, version: int, created_at: datetime
    ) -> HealthInformationState | None:
        if self._cache is None or not self._rollout.enabled_for("cache", kit_id):
            return None
        key = KEY_PREFIX + kit_id
        state = None
        if self._near is not None:
            state = await self._valid(kit_id, await self._near.get(key), version, created_at)
        if state is None:
            entry = await self._cache.get(key)
            state = await self._valid(kit_id, entry, version, created_at)
            if state is not None and entry is not None and self._near is not None:
                await self._near.delete(key)  # it held another version or creation
                await self._near.put_if_newer(key, entry, 0)
        self._metrics.record_cache_lookup(hit=state is not None)
        return state

    async def _valid(
        self, kit_id: str, entry: CacheEntry | None, version: int, created_at: datetime
    ) -> HealthInformationState | None:
        """The entry's state if it is exactly the version the database just named."""
        if entry is None or entry.version != version:
            return None
        state = await self._decode(kit_id, entry)
        return state if state is not None and state.created_at == created_at else None

    async def committed_version(self, kit_id: str) -> tuple[int, datetime] | None:
        """The cached state's version and creation time: a state known to be committed.

        Entries are only ever written from committed states, so a streaming replica that shows
        less than this lags behind it (``replication/``). The answers are not decoded.
        """
        if self._cache is None or not self._rollout.enabled_for("cache", kit_id):
            return None
        entry = await self._cache.get(KEY_PREFIX + kit_id)
        if entry is None:
            return None
        try:
            created_at = datetime.fromisoformat(json.loads(entry.payload)["c"])
        except (ValueError, KeyError, TypeError):
            self._metrics.cache_errors.labels("garbage").inc()
            return None
        return entry.version, created_at

    async def remember(
        self, state: HealthInformationState, *, stored_answers: str | None = None
    ) -> None:
        """``stored_answers``: the answers as the write stored them (its codec's output), so
        the entry needs no second encryption (nor the key store lookup it takes)."""
        if self._cache is None or not self._rollout.enabled_for("cache", state.kit_id):
            return
        entry = CacheEntry(state.version, await self._encode(state, stored_answers))
        if self._near is not None:
            await self._near.put_if_newer(KEY_PREFIX + state.kit_id, entry, 0)
        if await self._cache.put_if_newer(KEY_PREFIX + state.kit_id, entry):
            self._metrics.cache_fills.inc()

    async def forget(self, kit_id: str) -> bool:
        if self._near is not None:
            await self._near.delete(KEY_PREFIX + kit_id)
        return True if self._cache is None else await self._cache.delete(KEY_PREFIX + kit_id)

    async def _encode(self, state: HealthInformationState, stored_answers: str | None) -> bytes:
        if stored_answers is None:
            stored_answers = await self._codec.encode(state.kit_id, state.answers)
        document = {
            "q": [state.questionnaire_id, state.questionnaire_version],
            "s": state.status.value,
            "a": stored_answers,
            "c": state.created_at.isoformat(),
            "u": state.updated_at.isoformat(),
            "b": state.updated_by,
            "t": state.submitted_at.isoformat() if state.submitted_at else None,
            "f": state.field_versions,
        }
        return json.dumps(document, separators=(",", ":")).encode()

    async def _decode(self, kit_id: str, entry: CacheEntry) -> HealthInformationState | None:
        try:
            doc: dict[str, Any] = json.loads(entry.payload)
            return HealthInformationState(
                kit_id=kit_id,
                questionnaire_id=doc["q"][0],
                questionnaire_version=doc["q"][1],
                status=Status(doc["s"]),
                answers=await self._codec.decode(kit_id, doc["a"]),
                version=entry.version,
                created_at=datetime.fromisoformat(doc["c"]),
                updated_at=datetime.fromisoformat(doc["u"]),
                updated_by=doc["b"],
                submitted_at=datetime.fromisoformat(doc["t"]) if doc["t"] else None,
                field_versions={str(k): int(v) for k, v in doc["f"].items()},
            )
        except (ValueError, KeyError, TypeError, IndexError, KeyDestroyed):
            self._metrics.cache_errors.labels("garbage").inc()
            return None
