"""Open a streaming route in-process and report how it answered, then hang up.

httpx's ASGI transport buffers a whole response, which never ends for an event stream, and
cannot speak WebSocket. These drivers read only the answer (HTTP status, or the WebSocket
accept / close code) and then disconnect, so access rules of streaming routes can be tested
like any other route.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.types import ASGIApp, Message

ANSWER_TIMEOUT = 10.0


def _scope(kind: str, method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    path_part, _, query = path.partition("?")
    return {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http" if kind == "http" else "ws",
        "path": path_part,
        "raw_path": path_part.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("203.0.113.7", 50000),
        "server": ("testserver", 80),
        "state": {},
    }


async def _drive(app: ASGIApp, scope: dict[str, Any], first: Message) -> Message:
    answered: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
    hang_up = asyncio.Event()
    sent_first = False

    async def receive() -> Message:
        nonlocal sent_first
        if not sent_first:
            sent_first = True
            return first
        await hang_up.wait()
        return (
            {"type": "http.disconnect"}
            if scope["type"] == "http"
            else {"type": "websocket.disconnect", "code": 1000}
        )

    async def send(message: Message) -> None:
        # A WebSocket server may accept and then close with a code (what browsers can read):
        # the answer is the first close, or the first message after an accept.
        final = message["type"] in ("http.response.start", "websocket.close") or (
            message["type"] == "websocket.send" and not _is_error(message)
        )
        if not answered.done() and final:
            answered.set_result(message)
            hang_up.set()

    task = asyncio.create_task(app(scope, receive, send))
    try:
        return await asyncio.wait_for(asyncio.shield(answered), ANSWER_TIMEOUT)
    finally:
        hang_up.set()
        try:
            await asyncio.wait_for(task, ANSWER_TIMEOUT)
        except (TimeoutError, Exception):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _is_error(message: Message) -> bool:
    """An error message before the close that explains it (the close code is the answer)."""
    try:
        return bool(json.loads(message.get("text") or "{}").get("type") == "error")
    except ValueError:
        return False


async def http_status(app: ASGIApp, method: str, path: str, headers: dict[str, str]) -> int:
    scope = _scope("http", method, path, headers)
    message = await _drive(app, scope, {"type": "http.request", "body": b"", "more_body": False})
    return int(message["status"])


async def websocket_answer(app: ASGIApp, path: str, headers: dict[str, str]) -> int | str:
    """``"open"`` (accepted, and its first message arrived) or the close code it answered with.

    A server that accepts and then closes (so browsers can read the reason) answers with that
    close code, like one that refuses the handshake outright.
    """
    scope = _scope("websocket", "GET", path, headers)
    scope["subprotocols"] = []
    message = await _drive(app, scope, {"type": "websocket.connect"})
    if message["type"] == "websocket.send":
        return "open"
    if message["type"] == "http.response.start":  # a handshake refused with an HTTP response
        return int(message["status"])
    return int(message.get("code", 1000))


class Conversation:
    """Both directions of an in-process WebSocket: what the app sent, and sending it text."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()

    async def send_json(self, data: dict[str, Any]) -> None:
        await self.inbox.put({"type": "websocket.receive", "text": json.dumps(data)})

    async def receive(self) -> Message:
        """The app's next ASGI message (``websocket.send`` or ``websocket.close``)."""
        return await asyncio.wait_for(self.outbox.get(), ANSWER_TIMEOUT)

    async def receive_json(self) -> dict[str, Any]:
        message = await self.receive()
        assert message["type"] == "websocket.send", message
        data: dict[str, Any] = json.loads(message["text"])
        return data


@contextlib.asynccontextmanager
async def websocket_conversation(
    app: ASGIApp, path: str, headers: dict[str, str]
) -> AsyncIterator[Conversation]:
    """A WebSocket to ``app`` in this process, for tests that must control the app's clock
    or modules (a live server's cannot be); hangs up on exit."""
    scope = _scope("websocket", "GET", path, headers)
    scope["subprotocols"] = []
    talk = Conversation()
    await talk.inbox.put({"type": "websocket.connect"})

    async def send(message: Message) -> None:
        if message["type"] != "websocket.accept":
            await talk.outbox.put(message)

    task = asyncio.create_task(app(scope, talk.inbox.get, send))
    try:
        yield talk
    finally:
        await talk.inbox.put({"type": "websocket.disconnect", "code": 1000})
        try:
            await asyncio.wait_for(task, ANSWER_TIMEOUT)
        except (TimeoutError, Exception):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
