"""One attempt to deliver one event: a signed POST, and what its outcome means.

Any 2xx is delivered. A 4xx other than 408 and 429 means the lab will never accept this body,
so retrying cannot help: the event is dead-lettered at once. Everything else (5xx, 408, 429,
3xx, timeouts, refused or dropped connections) is retried. The body sent is exactly the bytes
signed, and the same bytes and ``Idempotency-Key`` go out on every retry; only ``t`` is fresh.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import httpx

from healthinfo import __version__
from healthinfo.forwarding.signing import HEADER, signature_header

RETRYABLE_4XX = frozenset({408, 429})


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What happened; ``error`` is short and never holds the body or a header value."""

    outcome: Outcome
    status: int | None = None
    error: str | None = None


def classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        return Outcome.DEAD
    return Outcome.RETRY


def request_headers(*, event_id: str, body: bytes, secret: bytes, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Idempotency-Key": event_id,
        HEADER: signature_header(secret, timestamp, body),
        "User-Agent": f"healthinfo/{__version__}",
    }


class Sender:
    """POSTs events to the lab with one ``httpx.AsyncClient`` (its connection pool is reused)."""

    def __init__(
        self,
        *,
        url: str,
        secret: bytes,
        timeout_seconds: float,
        client: httpx.AsyncClient | None = None,
        unix_time: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._secret = secret
        self._timeout = timeout_seconds
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds), follow_redirects=False
        )
        self._unix_time = unix_time

    async def send(self, event_id: str, body: bytes) -> AttemptResult:
        """One attempt, bounded in total by the timeout (httpx's own is per read, not total)."""
        headers = request_headers(
            event_id=event_id, body=body, secret=self._secret, timestamp=int(self._unix_time())
        )
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(self._url, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException) as exc:
            return AttemptResult(Outcome.RETRY, error=f"timeout ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return AttemptResult(Outcome.RETRY, error=f"transport error ({type(exc).__name__})")
        outcome = classify(response.status_code)
        error = None if outcome is Outcome.DELIVERED else f"HTTP {response.status_code}"
        return AttemptResult(outcome, status=response.status_code, error=error)

    async def aclose(self) -> None:
        await self._client.aclose()
