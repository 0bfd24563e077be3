"""Streams and sockets follow changes to their authorization, and meet the same limits as REST.

Against a real ``healthinfo serve`` per backend: a member removed, re-roled, a kit erased or a
token expiring ends (or narrows) every open SSE stream and WebSocket of the kit, and nothing of
the kit is sent after the change; WebSocket messages count against the rate limits; one user
cannot fill a room; malformed text and disconnects are handled quietly. Across two instances:
tests/integration/test_realtime_instances.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support.backends import REDIS_URL
from tests.support.live import (
    LIVE_ENV,
    STARTUP_SECONDS,
    SseStream,
    opened,
    receive,
    receive_type,
    request,
    sse,
    until_closed,
    websocket,
)
from tests.support.server import ServerProcess
from tests.support.tokens import auth, token

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

# What "within 1 s" leaves for a loaded test machine's scheduling.
PROMPTLY = 1.5


def new_user(role: str = "user") -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


async def claimed_kit(http: httpx.AsyncClient, owner: str, *members: tuple[str, str]) -> str:
    kit_id = f"KIT-{uuid.uuid4().hex[:12]}"
    assert (await http.post(f"/v1/kits/{kit_id}/claim", headers=auth(owner))).status_code == 201
    for user, role in members:
        await set_role(http, kit_id, owner, user, role)
    return kit_id


async def set_role(http: httpx.AsyncClient, kit_id: str, owner: str, user: str, role: str) -> None:
    response = await http.put(
        f"/v1/kits/{kit_id}/members/{user}", json={"role": role}, headers=auth(owner)
    )
    assert response.status_code in (200, 201), response.text


async def remove(http: httpx.AsyncClient, kit_id: str, owner: str, user: str) -> None:
    response = await http.delete(f"/v1/kits/{kit_id}/members/{user}", headers=auth(owner))
    assert response.status_code == 204, response.text


async def patch(http: httpx.AsyncClient, kit_id: str, user: str, answers: dict[str, Any]) -> int:
    response = await http.patch(url(kit_id), json={"answers": answers}, headers=auth(user))
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


async def revoked(stream: SseStream, within: float = PROMPTLY) -> tuple[Any, list[str]]:
    """Read to the end: the ``revoked`` event's problem, and every event name sent before it."""
    names: list[str] = []
    frames = await stream.until_end(within=within)
    problem = None
    for frame in frames:
        if frame.event == "revoked":
            problem = frame.data
        elif frame.event is not None:
            names.append(frame.event)
    assert stream.ended
    assert frames
    assert frames[-1].event == "revoked", [f.event for f in frames]
    return problem, names


@pytest.fixture
def server(live_server: ServerProcess) -> ServerProcess:
    return live_server


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        yield client


# -- membership and erasure ----------------------------------------------------------------


async def test_a_removed_viewer_s_stream_ends_with_revoked_and_sends_no_later_answer(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner, viewer = new_user(), new_user("viewer")
    kit_id = await claimed_kit(http, owner, (viewer, "viewer"))
    await patch(http, kit_id, owner, {"heightCm": 170})
    async with sse(server.base_url, kit_id, viewer) as stream:
        await stream.event("presence")
        await remove(http, kit_id, owner, viewer)
        started = time.monotonic()
        await patch(http, kit_id, owner, {"heightCm": 171})  # committed after the removal
        problem, sent = await revoked(stream)
        assert time.monotonic() - started < PROMPTLY
    assert (problem["status"], problem["code"]) == (403, "forbidden")
    assert problem["instance"] == url(kit_id, "/events")
    assert "updated" not in sent


async def test_an_admin_giving_the_kit_to_another_owner_ends_the_old_owner_s_stream(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    old_owner, new_owner = new_user(), new_user()
    kit_id = await claimed_kit(http, old_owner)
    await patch(http, kit_id, old_owner, {"heightCm": 170})
    async with sse(server.base_url, kit_id, old_owner) as stream:
        await stream.event("presence")
        response = await http.put(
            f"/v1/kits/{kit_id}/owner",
            json={"userId": new_owner},
            headers=auth("admin-owner", "admin"),
        )
        assert response.status_code == 200, response.text
        # No later write is needed: the change itself ends the stream, at once.
        problem, sent = await revoked(stream)
    assert (problem["status"], problem["code"]) == (403, "forbidden")
    assert "updated" not in sent


async def test_a_removed_member_s_websocket_closes_4403_after_a_problem(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner, editor = new_user(), new_user("editor")
    kit_id = await claimed_kit(http, owner, (editor, "editor"))
    async with websocket(server.base_url, kit_id, editor) as ws:
        await opened(ws)
        await remove(http, kit_id, owner, editor)
        await patch(http, kit_id, owner, {"heightCm": 171})
        messages = await messages_until_closed(ws)
    assert ws.close_code == 4403
    assert [m["type"] for m in messages] == ["error"]
    assert messages[0]["problem"]["code"] == "forbidden"
    assert messages[0]["requestId"] is None


async def messages_until_closed(ws: ClientConnection) -> list[dict[str, Any]]:
    messages = []
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(PROMPTLY):
            async for raw in ws:
                messages.append(json.loads(raw))
    return [m for m in messages if m["type"] != "presence"]


async def test_an_editor_made_viewer_keeps_following_but_can_no_longer_write(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner, editor = new_user(), new_user("editor")
    kit_id = await claimed_kit(http, owner, (editor, "editor"))
    async with websocket(server.base_url, kit_id, editor) as ws:
        await opened(ws)
        assert (await request(ws, {"type": "update", "answers": {"heightCm": 170}}))["type"] == (
            "ack"
        )
        await set_role(http, kit_id, owner, editor, "viewer")
        refused = await request(ws, {"type": "update", "answers": {"heightCm": 171}})
        assert (refused["type"], refused["problem"]["code"]) == ("error", "forbidden")
        await patch(http, kit_id, owner, {"heightCm": 172})
        assert (await receive_type(ws, "updated"))["data"]["answers"] == {"heightCm": 172}
    current = await http.get(url(kit_id), headers=auth(owner))
    assert current.json()["answers"] == {"heightCm": 172}


async def test_erasing_the_kit_ends_every_stream_of_it(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner, viewer = new_user(), new_user("viewer")
    kit_id = await claimed_kit(http, owner, (viewer, "viewer"))
    await patch(http, kit_id, owner, {"heightCm": 170})
    async with (
        sse(server.base_url, kit_id, viewer) as stream,
        websocket(server.base_url, kit_id, owner) as ws,
    ):
        await stream.event("presence")
        await opened(ws)
        erased = await http.delete(url(kit_id), headers=auth(owner))
        assert erased.status_code == 204, erased.text
        await patch(http, kit_id, owner, {"heightCm": 150})  # saved anew: version 1 again
        problem, sent = await revoked(stream)
        assert (problem["status"], problem["code"]) == (404, "not-found")
        assert "erased" in problem["detail"]
        assert "updated" not in sent
        assert (await until_closed(ws))[0] == 4404


# -- malformed text and disconnects --------------------------------------------------------


async def test_a_lone_surrogate_is_refused_and_the_socket_keeps_working(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(http, owner)
    async with websocket(server.base_url, kit_id, owner) as ws:
        await opened(ws)
        for text in (
            '{"type": "update", "requestId": "\\ud800", "answers": {}}',
            '{"type": "update", "requestId": "r1", "answers": {"\\udfff": 1}}',
        ):
            await ws.send(text)
            error = await receive_type(ws, "error")
            assert (error["requestId"], error["problem"]["code"]) == (None, "malformed-request")
        ack = await request(ws, {"type": "update", "answers": {"heightCm": 170}})
        assert (ack["type"], ack["version"]) == ("ack", 1)
    log = server.log.read_text()
    assert "ud800" not in log.lower()


async def test_a_client_that_hangs_up_mid_write_is_logged_at_info_not_as_an_error(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(http, owner)
    before = server.log.read_text()
    for _ in range(3):
        async with websocket(server.base_url, kit_id, owner) as ws:
            await opened(ws)
            # A few writes in flight are enough to hang up on; more only queue behind SQLite's
            # one writer and slow the next opening on a busy machine (a CI flake once).
            for height in range(100, 106):
                await ws.send(
                    json.dumps(
                        {"type": "update", "requestId": "r", "answers": {"heightCm": height}}
                    )
                )
            # leaving the block closes the socket while acks are still to be sent
        await asyncio.sleep(0.3)  # let the server finish the writes it accepted
    await asyncio.sleep(1.0)
    added = server.log.read_text()[len(before) :]
    errors = [
        line for line in added.splitlines() if '"level": "error"' in line.lower() or "ERROR" in line
    ]
    assert errors == []
    assert "never retrieved" not in added


# -- a server of their own: token expiry, limits, the per-user cap -------------------------

STRICT_ENV = {
    **LIVE_ENV,
    "HEALTHINFO_RATE_LIMIT_ENABLED": "true",
    "HEALTHINFO_JWT_LEEWAY_SECONDS": "0",
    "HEALTHINFO_ROOM_LIMIT": "4",
    "HEALTHINFO_ROOM_USER_LIMIT": "2",
    "HEALTHINFO_RATE_LIMIT_WRITE_PER_USER": "5/minute",
    "HEALTHINFO_RATE_LIMIT_FOCUS_PER_USER": "3/minute",
    **{
        f"HEALTHINFO_RATE_LIMIT_{kind}_PER_{who}": "100000/minute"
        for kind, who in (
            ("READ", "USER"),
            ("STREAM", "USER"),
            ("READ", "ADDRESS"),
            ("WRITE", "ADDRESS"),
            ("STREAM", "ADDRESS"),
        )
    },
}


@pytest.fixture(scope="module")
def strict_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """No token leeway and tight limits; PostgreSQL runs count in the shared Redis (own prefix)."""
    env = dict(STRICT_ENV)
    if database_url.startswith("postgresql"):
        env["HEALTHINFO_REDIS_URL"] = REDIS_URL
        env["HEALTHINFO_REDIS_KEY_PREFIX"] = f"healthinfo-test-{uuid.uuid4().hex[:10]}:"
    process = ServerProcess(
        database_url=database_url, data_dir=tmp_path_factory.mktemp("strict"), extra_env=env
    )
    process.start(timeout=STARTUP_SECONDS)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def strict_http(strict_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=strict_server.base_url, timeout=10) as client:
        yield client


async def test_a_stream_ends_when_its_token_expires(
    strict_server: ServerProcess, strict_http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(strict_http, owner)
    short = token(owner, ttl_seconds=2)
    started = time.monotonic()
    async with sse(strict_server.base_url, kit_id, params={"access_token": short}) as stream:
        assert stream.response.status_code == 200
        problem, _ = await revoked(stream, within=4)
    assert 1.0 < time.monotonic() - started < 2 + PROMPTLY
    assert (problem["status"], problem["code"]) == (401, "unauthenticated")


async def test_a_websocket_closes_4401_when_its_token_expires(
    strict_server: ServerProcess, strict_http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(strict_http, owner)
    short = token(owner, ttl_seconds=2)
    async with websocket(strict_server.base_url, kit_id, query=f"access_token={short}") as ws:
        await opened(ws)
        error = await receive_type(ws, "error", within=4)
        assert error["problem"]["code"] == "unauthenticated"
        assert (await until_closed(ws))[0] == 4401


async def test_a_websocket_write_after_the_token_expired_is_refused(
    strict_server: ServerProcess, strict_http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(strict_http, owner)
    short = token(owner, ttl_seconds=2)
    async with websocket(strict_server.base_url, kit_id, query=f"access_token={short}") as ws:
        await opened(ws)
        await asyncio.sleep(2.05)  # expired; the write races the expiry timer
        try:
            reply = await request(ws, {"type": "update", "answers": {"heightCm": 170}})
        except Exception:  # the server closed first: the write was not taken either
            reply = {"type": "closed"}
        assert reply["type"] != "ack", reply
    current = await strict_http.get(url(kit_id), headers=auth(owner))
    assert current.status_code == 404  # nothing was saved


async def test_websocket_updates_and_submits_count_against_the_write_limit(
    strict_server: ServerProcess, strict_http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(strict_http, owner)
    async with websocket(strict_server.base_url, kit_id, owner) as ws:
        await opened(ws)
        replies = [
            await request(ws, {"type": "update", "answers": {"heightCm": 150 + i}})
            for i in range(8)
        ]
        # A submit is a write too: refused with the same budget spent.
        submitted = await request(ws, {"type": "submit"})
    # The claim was the first write of the user's five.
    assert [r["type"] for r in replies] == ["ack"] * 4 + ["error"] * 4
    problem = replies[-1]["problem"]
    assert (problem["status"], problem["code"]) == (429, "rate-limited")
    assert problem["retryAfter"] >= 1
    assert (submitted["type"], submitted["problem"]["code"]) == ("error", "rate-limited")
    # The same budget as REST: the user's next REST write is refused too.
    response = await strict_http.patch(
        url(kit_id), json={"answers": {"heightCm": 190}}, headers=auth(owner)
    )
    assert response.status_code == 429
    assert (await strict_http.get(url(kit_id), headers=auth(owner))).json()["version"] == 4


async def test_focus_messages_have_a_limit_of_their_own(
    strict_server: ServerProcess, strict_http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(strict_http, owner)
    async with websocket(strict_server.base_url, kit_id, owner) as ws:
        await opened(ws)
        replies = []
        for i in range(5):
            await ws.send(json.dumps({"type": "focus", "field": "heightCm" if i % 2 else None}))
        for _ in range(2):
            replies.append(await receive_type(ws, "error"))
        assert [r["problem"]["code"] for r in replies] == ["rate-limited"] * 2
        assert all(r["problem"]["retryAfter"] >= 1 for r in replies)
        # Writes keep their own budget.
        assert (await request(ws, {"type": "update", "answers": {"heightCm": 1}}))["type"] in (
            "ack",
            "error",
        )


async def test_one_user_cannot_fill_a_room_and_room_full_says_when_to_retry(
    strict_server: ServerProcess, strict_http: httpx.AsyncClient
) -> None:
    owner, viewer = new_user(), new_user("viewer")
    kit_id = await claimed_kit(strict_http, owner, (viewer, "viewer"))
    base = strict_server.base_url
    async with sse(base, kit_id, owner) as one, sse(base, kit_id, owner) as two:
        assert (one.response.status_code, two.response.status_code) == (200, 200)
        async with sse(base, kit_id, owner) as three:
            assert three.response.status_code == 429
            assert three.response.json()["code"] == "room-full"
            assert int(three.response.headers["retry-after"]) >= 1
            assert three.response.json()["retryAfter"] >= 1
        async with websocket(base, kit_id, owner) as four:
            message = await receive(four)
            assert message["problem"]["code"] == "room-full"
            assert (await until_closed(four))[0] == 4429
        async with sse(base, kit_id, viewer) as other:  # someone else still gets in
            assert other.response.status_code == 200
