"""A real HTTP server on 127.0.0.1 playing the lab's API: it verifies every signature the way
docs/forwarding.md tells the lab to, and fails on purpose (5xx, 4xx, dropped connections,
answers too late, a closed port) as its ``policy`` decides per request.

Written on ``asyncio.start_server`` with a minimal HTTP/1.1 parser (keep-alive, Content-Length
bodies), so it runs in the test's own event loop and a test can close and reopen its port.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

REPLAY_WINDOW_SECONDS = 300
REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 408: "Request Timeout"}


def lab_verifies(secret: bytes, header: str, body: bytes, now: float) -> bool:
    """The lab's check, written from the documentation (not from our signing module)."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    if not parts.get("t", "").isdigit() or "v1" not in parts:
        return False
    timestamp = int(parts["t"])
    if abs(now - timestamp) > REPLAY_WINDOW_SECONDS:
        return False
    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


@dataclass(frozen=True)
class Respond:
    status: int = 200
    delay: float = 0.0  # seconds before answering


@dataclass(frozen=True)
class Hang:
    """Hold the request without answering for ``seconds``, then drop the connection."""

    seconds: float


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering."""


Action = Respond | Hang | Drop


@dataclass(frozen=True)
class Request:
    index: int  # arrival order at this receiver
    headers: dict[str, str]
    body: bytes
    signature_valid: bool
    seen_before: int  # earlier requests with the same Idempotency-Key

    @property
    def idempotency_key(self) -> str:
        return self.headers.get("idempotency-key", "")

    @property
    def event(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded


Policy = Callable[[Request], Action]


def always_ok(_request: Request) -> Action:
    return Respond(200)


@dataclass
class Lab:
    secret: bytes
    policy: Policy = always_ok
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    accepted: list[Request] = field(default_factory=list)  # answered 2xx, in that order
    in_flight: int = 0
    # Idempotency-Key → how many requests had arrived when it was first accepted.
    first_accepted_mark: dict[str, int] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _connections: set[asyncio.StreamWriter] = field(default_factory=set)
    _seen: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/lab/events"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and cut every connection: new requests are refused."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- what arrived ------------------------------------------------------------------------

    def accepted_ids(self) -> set[str]:
        return {r.idempotency_key for r in self.accepted}

    def for_event(self, event_id: str) -> list[Request]:
        return [r for r in self.requests if r.idempotency_key == event_id]

    async def wait_for(self, condition: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._changed.wait()

    # -- the server --------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._answer(headers, body, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _answer(
        self, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        key = headers.get("idempotency-key", "")
        request = Request(
            index=len(self.requests),
            headers=headers,
            body=body,
            signature_valid=lab_verifies(
                self.secret, headers.get("x-healthinfo-signature", ""), body, time.time()
            ),
            seen_before=self._seen[key],
        )
        self._seen[key] += 1
        self.requests.append(request)
        self._changed.set()
        action = self.policy(request)
        self.in_flight += 1
        try:
            if isinstance(action, Drop):
                return False
            if isinstance(action, Hang):
                await asyncio.sleep(action.seconds)
                return False
            if action.delay:
                await asyncio.sleep(action.delay)
            if 200 <= action.status < 300:
                self.accepted.append(request)
                self.first_accepted_mark.setdefault(key, len(self.requests))
                self._changed.set()
        finally:
            self.in_flight -= 1
        reason = REASONS.get(action.status, "Status")
        writer.write(
            f"HTTP/1.1 {action.status} {reason}\r\nContent-Length: 0\r\n\r\n".encode("latin-1")
        )
        await writer.drain()
        return True


def assert_delivered_once_each_in_kit_order(
    lab: Lab, events: Iterable[tuple[str, str, int]]
) -> None:
    """What the lab must be able to rely on, for ``events`` = (event id, kit id, kit sequence):

    every event accepted at least once and, after de-duplicating by Idempotency-Key, exactly
    the expected set; every request correctly signed, its Idempotency-Key the body's eventId and
    its body the same bytes on every retry; and no request for a kit's event before each
    earlier event of that kit had been accepted.
    """
    expected = list(events)
    ids = {event_id for event_id, _, _ in expected}
    assert lab.accepted_ids() >= ids, f"never accepted: {len(ids - lab.accepted_ids())}"
    assert lab.accepted_ids() <= ids, f"unexpected: {sorted(lab.accepted_ids() - ids)[:5]}"
    bodies: dict[str, bytes] = {}
    for request in lab.requests:
        assert request.signature_valid, request.headers
        assert request.headers["content-type"] == "application/json"
        assert request.event["eventId"] == request.idempotency_key
        assert bodies.setdefault(request.idempotency_key, request.body) == request.body
    by_kit: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for event_id, kit_id, sequence in expected:
        by_kit[kit_id].append((sequence, event_id))
    position = {event_id: (kit, seq) for event_id, kit, seq in expected}
    for request in lab.requests:
        kit, sequence = position[request.idempotency_key]
        for earlier_sequence, earlier_id in by_kit[kit]:
            if earlier_sequence < sequence:
                accepted_mark = lab.first_accepted_mark.get(earlier_id)
                assert accepted_mark is not None, f"kit {kit}: event {earlier_sequence} missing"
                assert accepted_mark <= request.index, (
                    f"kit {kit}: event {sequence} was sent before event {earlier_sequence} "
                    "was delivered"
                )
