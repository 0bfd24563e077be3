"""Clients for the live routes of a real server: an SSE reader and WebSocket helpers.

The SSE reader parses the stream itself (comments and ``retry:`` included), because the tests
check exactly what goes over the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.tokens import auth, token

WAIT = 10.0
# A server subprocess may start slowly on a busy machine (CI runners share their CPUs).
STARTUP_SECONDS = 90.0
# Settings of the shared live server (``live_server`` in conftest.py): quick pings, a small room
# (so the room limit is reachable), and no rate limits (they have tests of their own).
LIVE_ENV = {
    "HEALTHINFO_REALTIME_PING_SECONDS": "0.3",
    "HEALTHINFO_ROOM_LIMIT": "3",
    "HEALTHINFO_RATE_LIMIT_ENABLED": "false",
}


def events_path(kit_id: str, *, legacy: bool = False) -> str:
    return f"{'' if legacy else '/v1'}/kits/{kit_id}/health-information/events"


def ws_url(base_url: str, kit_id: str, query: str = "") -> str:
    return (
        base_url.replace("http://", "ws://", 1)
        + f"/v1/kits/{kit_id}/health-information/ws"
        + (f"?{query}" if query else "")
    )


@dataclass
class Frame:
    """One dispatched SSE block: an event, or only comments / a retry hint."""

    event: str | None = None
    id: str | None = None
    data: Any = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


class SseStream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.frames: list[Frame] = []
        self.ended = False

    async def frame(self, within: float = WAIT) -> Frame:
        """The next frame; raises EOFError when the server ended the stream."""
        async with asyncio.timeout(within):
            current = Frame()
            data: list[str] = []
            seen = False
            while True:
                try:
                    line = await anext(self._lines)
                except StopAsyncIteration:
                    self.ended = True
                    raise EOFError("the server ended the stream") from None
                if line == "":
                    if not seen:
                        continue
                    current.data = json.loads("\n".join(data)) if data else None
                    self.frames.append(current)
                    return current
                seen = True
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "":
                    current.comments.append(value)
                elif name == "event":
                    current.event = value
                elif name == "id":
                    current.id = value
                elif name == "data":
                    data.append(value)
                elif name == "retry":
                    current.retry = int(value)

    async def event(self, *names: str, within: float = WAIT) -> Frame:
        """The next event (comment-only frames skipped), of one of ``names`` when given."""
        async with asyncio.timeout(within):
            while True:
                frame = await self.frame()
                if frame.event is not None and (not names or frame.event in names):
                    return frame

    async def presence(self, predicate: Any, within: float = WAIT) -> list[dict[str, str]]:
        """Wait for a presence event whose user list satisfies ``predicate``."""
        async with asyncio.timeout(within):
            while True:
                users: list[dict[str, str]] = (await self.event("presence")).data["users"]
                if predicate(users):
                    return users

    async def until_end(self, within: float = WAIT) -> list[Frame]:
        frames = []
        try:
            async with asyncio.timeout(within):
                while True:
                    frames.append(await self.frame(within))
        except EOFError:
            return frames


@asynccontextmanager
async def sse(
    base_url: str,
    kit_id: str,
    user: str | None = None,
    *,
    roles: tuple[str, ...] = (),
    query_token: bool = False,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    legacy: bool = False,
) -> AsyncIterator[SseStream]:
    """An open SSE response (any status); the caller checks ``stream.response.status_code``."""
    sent = dict(headers or {})
    query = dict(params or {})
    if user is not None:
        if query_token:
            query["access_token"] = token(user, roles)
        else:
            sent.update(auth(user, *roles))
    timeout = httpx.Timeout(WAIT, read=None)
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=timeout) as client,
        client.stream("GET", events_path(kit_id, legacy=legacy), headers=sent, params=query) as r,
    ):
        if r.status_code != 200:
            await r.aread()
        yield SseStream(r)


@asynccontextmanager
async def websocket(
    base_url: str,
    kit_id: str,
    user: str | None = None,
    *,
    roles: tuple[str, ...] = (),
    query: str = "",
    header_token: bool = False,
) -> AsyncIterator[ClientConnection]:
    headers: dict[str, str] = {}
    parts = [query] if query else []
    if user is not None:
        if header_token:
            headers.update(auth(user, *roles))
        else:
            parts.append(f"access_token={token(user, roles)}")
    async with connect(
        ws_url(base_url, kit_id, "&".join(parts)), additional_headers=headers, open_timeout=WAIT
    ) as ws:
        yield ws


async def receive(ws: ClientConnection, within: float = WAIT) -> dict[str, Any]:
    async with asyncio.timeout(within):
        message: dict[str, Any] = json.loads(await ws.recv())
        return message


async def receive_type(ws: ClientConnection, *types: str, within: float = WAIT) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            message = await receive(ws)
            if message["type"] in types:
                return message


async def opened(ws: ClientConnection) -> list[dict[str, Any]]:
    """The opening messages: a snapshot or replay, then the first presence (always sent)."""
    messages = []
    while True:
        message = await receive(ws)
        messages.append(message)
        if message["type"] == "presence":
            return messages


async def request(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    """Send a message with a fresh requestId; return its ``ack`` or ``error``."""
    request_id = message.get("requestId") or uuid.uuid4().hex
    await ws.send(json.dumps({**message, "requestId": request_id}))
    async with asyncio.timeout(WAIT):
        while True:
            reply = await receive(ws)
            if reply["type"] in ("ack", "error") and reply.get("requestId") == request_id:
                return reply


async def refused(ws: ClientConnection) -> tuple[dict[str, Any], int | None, str | None]:
    """A refused connection: its error message, then the close code and reason."""
    message = await receive(ws)
    async with asyncio.timeout(WAIT):
        await ws.wait_closed()
    rcvd = ws.close_code, ws.close_reason
    return message, rcvd[0], rcvd[1]


async def until_closed(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Read (and drop) messages until the server closes; its close code and reason."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(WAIT):
            async for _message in ws:
                pass
    return ws.close_code, ws.close_reason
