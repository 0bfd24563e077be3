"""One way to make a Redis client here: short timeouts and no hidden retries.

redis-py retries a failing command with back-off by default; a 0.2 s timeout once became a
3.7 s stall that way. Every client of ours fails within its timeout instead (``retries``
allows an immediate retry, for a pooled connection Redis closed while it sat idle), and the
caller decides what a failure means: a cache miss, in-process rate counting, a reconnect loop.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def fail_fast_redis(
    url: str, *, timeout_seconds: float, retries: int = 0, **options: Any
) -> aioredis.Redis:
    """``options``: anything else ``Redis.from_url`` takes (``client_name``, pool size…)."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), retries),
        retry_on_timeout=False,
        **options,
    )
    return client
