"""The contract's "Real-time" section on one real server (in-process bus, no Redis).

SSE and WebSocket against ``healthinfo serve`` in a subprocess: snapshot, live events from
every write channel, resume from the revision history, pings, presence, message errors, room
limit (and that a closed connection gives its place back), connection lifetime, token
redaction in the server's log, and graceful shutdown on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.answers import COMPLETE
from tests.support.backends import sqlite_url
from tests.support.legacy import DEPRECATION
from tests.support.live import (
    LIVE_ENV,
    STARTUP_SECONDS,
    opened,
    receive,
    receive_type,
    refused,
    request,
    sse,
    until_closed,
    websocket,
)
from tests.support.server import ServerProcess
from tests.support.tokens import auth, token

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


ROOM_LIMIT = int(LIVE_ENV["HEALTHINFO_ROOM_LIMIT"])


def start(database_url: str, data_dir: Path, **env: str) -> ServerProcess:
    process = ServerProcess(
        database_url=database_url, data_dir=data_dir, extra_env={**LIVE_ENV, **env}
    )
    process.start(timeout=STARTUP_SECONDS)
    return process


@pytest.fixture
def server(live_server: ServerProcess) -> ServerProcess:
    """The shared server: in-process bus, pings every 0.3 s, rooms of three (tests/support/live)."""
    return live_server


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        yield client


def new_user(role: str = "user") -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


async def claimed_kit(http: httpx.AsyncClient, owner: str, *members: tuple[str, str]) -> str:
    kit_id = f"KIT-{uuid.uuid4().hex[:12]}"
    assert (await http.post(f"/v1/kits/{kit_id}/claim", headers=auth(owner))).status_code == 201
    for user, role in members:
        response = await http.put(
            f"/v1/kits/{kit_id}/members/{user}", json={"role": role}, headers=auth(owner)
        )
        assert response.status_code in (200, 201)
    return kit_id


async def patch(http: httpx.AsyncClient, kit_id: str, user: str, answers: dict[str, Any]) -> int:
    response = await http.patch(url(kit_id), json={"answers": answers}, headers=auth(user))
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


# -- SSE -----------------------------------------------------------------------------------


async def test_sse_sends_a_snapshot_then_every_change_from_every_channel(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner, editor = new_user(), new_user("editor")
    kit_id = await claimed_kit(http, owner, (editor, "editor"))
    saved = await http.put(url(kit_id), json={"answers": {"heightCm": 180}}, headers=auth(owner))

    async with sse(
        server.base_url, kit_id, owner, headers={"Accept-Encoding": "gzip, br"}
    ) as stream:
        headers = stream.response.headers
        assert stream.response.status_code == 200
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"] == "no-store"  # health data (docs/security.md)
        assert headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in headers
        first = await stream.frame()
        assert first.retry is not None
        snapshot = await stream.event()
        assert (snapshot.event, snapshot.id, snapshot.data) == ("snapshot", "1", saved.json())

        await patch(http, kit_id, owner, {"heightCm": 181, "smokingStatus": "never"})
        updated = await stream.event("updated")
        assert updated.id == "2"
        assert updated.data == {
            "version": 2,
            "by": owner,
            "channel": "rest",
            "changed": ["heightCm", "smokingStatus"],
            "answers": {"heightCm": 181, "smokingStatus": "never"},
            "status": "in-progress",
        }

        async with websocket(server.base_url, kit_id, editor) as ws:
            await opened(ws)
            assert (await request(ws, {"type": "update", "answers": {"weightKg": 70.5}}))[
                "version"
            ] == 3
        updated = await stream.event("updated")
        assert (updated.id, updated.data["channel"], updated.data["by"]) == (
            "3",
            "websocket",
            editor,
        )
        assert updated.data["answers"] == {"weightKg": 70.5}

        await patch(http, kit_id, owner, {"smokingStatus": None})
        removed = await stream.event("updated")
        assert (removed.id, removed.data["answers"]) == ("4", {"smokingStatus": None})

        await http.put(url(kit_id), json={"answers": COMPLETE}, headers=auth(owner))
        assert (await stream.event("updated")).id == "5"
        submitted = await http.post(url(kit_id, "/submit"), headers=auth(owner))
        event = await stream.event("submitted")
        assert (event.id, event.data) == ("6", submitted.json())
        assert event.data["status"] == "submitted"


async def test_no_snapshot_before_anything_is_saved(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(http, owner)
    async with sse(server.base_url, kit_id, owner, query_token=True) as stream:
        assert (await stream.event()).event == "presence"
        await patch(http, kit_id, owner, {"heightCm": 170})
        first = await stream.event()
        assert (first.event, first.id) == ("updated", "1")


async def test_resume_replays_every_missed_version_in_order(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(http, owner)
    await patch(http, kit_id, owner, {"heightCm": 170})
    await patch(http, kit_id, owner, {"weightKg": 60})
    await http.put(url(kit_id), json={"answers": COMPLETE}, headers=auth(owner))
    await http.post(url(kit_id, "/submit"), headers=auth(owner))

    async with sse(server.base_url, kit_id, owner, headers={"Last-Event-ID": "1"}) as stream:
        replay = [await stream.event() for _ in range(4)]
    assert [(f.event, f.id) for f in replay] == [
        ("updated", "2"),
        ("updated", "3"),
        ("submitted", "4"),
        ("presence", None),
    ]
    assert replay[0].data["answers"] == {"weightKg": 60}
    assert replay[0].data["channel"] == "rest"
    assert replay[2].data["status"] == "submitted"

    # The header (what EventSource resends) wins over the query parameter.
    async with sse(
        server.base_url,
        kit_id,
        owner,
        query_token=True,
        params={"lastEventId": "0"},
        headers={"Last-Event-ID": "3"},
    ) as stream:
        assert [(f.event, f.id) for f in [await stream.event(), await stream.event()]] == [
            ("submitted", "4"),
            ("presence", None),
        ]

    async with websocket(server.base_url, kit_id, owner, query="lastEventId=2") as ws:
        messages = await opened(ws)
    assert [(m["type"], m.get("id")) for m in messages] == [
        ("updated", "3"),
        ("submitted", "4"),
        ("presence", None),
    ]


async def test_resume_then_live_events_without_duplicates(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(http, owner)
    await patch(http, kit_id, owner, {"heightCm": 170})
    await patch(http, kit_id, owner, {"heightCm": 171})
    async with sse(server.base_url, kit_id, owner, params={"lastEventId": "1"}) as stream:
        assert (await stream.event()).id == "2"
        assert (await stream.event()).event == "presence"
        for height in (172, 173):
            await patch(http, kit_id, owner, {"heightCm": height})
        ids = [(await stream.event("updated")).id for _ in range(2)]
    assert ids == ["3", "4"]


async def test_a_resume_point_beyond_the_data_gets_a_snapshot(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(http, owner)
    await patch(http, kit_id, owner, {"heightCm": 170})
    async with sse(server.base_url, kit_id, owner, headers={"Last-Event-ID": "99"}) as stream:
        frame = await stream.event()
    assert (frame.event, frame.id) == ("snapshot", "1")
    async with sse(server.base_url, kit_id, owner, params={"lastEventId": "x1"}) as stream:
        assert stream.response.status_code == 422
        assert stream.response.json()["errors"][0]["field"] == "lastEventId"


async def test_ping_comments_keep_the_stream_alive(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(http, owner)
    async with sse(server.base_url, kit_id, owner) as stream:
        started = time.monotonic()
        pings = 0
        while pings < 3:
            frame = await stream.frame(within=2)
            pings += frame.comments.count("ping")
        assert time.monotonic() - started < 2.5


async def test_legacy_routes_are_aliases(server: ServerProcess, http: httpx.AsyncClient) -> None:
    owner = new_user()
    kit_id = await claimed_kit(http, owner)
    await patch(http, kit_id, owner, {"heightCm": 170})
    async with sse(server.base_url, kit_id, owner, legacy=True) as stream:
        assert stream.response.headers["deprecation"] == DEPRECATION
        assert (await stream.event()).event == "snapshot"
    legacy_ws = server.base_url.replace("http", "ws", 1) + f"/kits/{kit_id}/health-information/ws"
    async with connect(legacy_ws, additional_headers=auth(owner)) as ws:
        assert (await receive(ws))["type"] == "snapshot"


# -- WebSocket -----------------------------------------------------------------------------


async def test_websocket_errors_keep_the_connection_open(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(http, owner)
    async with websocket(server.base_url, kit_id, owner, header_token=True) as ws:
        await opened(ws)
        bad: list[tuple[str | bytes, str, str | None]] = [
            ("{not json", "malformed-request", None),
            ("[1, 2]", "malformed-request", None),
            (b"\x00\x01", "malformed-request", None),
            (json.dumps({"type": "delete", "requestId": "r1"}), "validation-failed", "type"),
            (json.dumps({"type": "update", "answers": {}}), "validation-failed", "requestId"),
            (
                json.dumps({"type": "update", "requestId": "r2", "answers": {}, "x": 1}),
                "validation-failed",
                "x",
            ),
            (
                json.dumps({"type": "update", "requestId": "r3", "answers": []}),
                "validation-failed",
                "answers",
            ),
            (json.dumps({"type": "focus", "field": "nope"}), "validation-failed", "field"),
        ]
        for payload, code, field in bad:
            await ws.send(payload)
            reply = await receive_type(ws, "error")
            problem = reply["problem"]
            assert (problem["code"], problem["status"]) == (
                code,
                400 if code == "malformed-request" else 422,
            ), payload
            assert problem["instance"] == url(kit_id, "/ws")
            if field is not None:
                assert field in {e["field"] for e in problem["errors"]}, problem
        reply = await request(ws, {"type": "update", "answers": {"heightCm": 170}})
        assert reply == {"type": "ack", "requestId": reply["requestId"], "version": 1}


async def test_presence_follows_joins_focus_and_leaves(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner, editor = new_user("a"), new_user("b")
    kit_id = await claimed_kit(http, owner, (editor, "editor"))
    async with sse(server.base_url, kit_id, owner) as stream:
        assert await stream.presence(lambda users: users == [{"userId": owner}])
        async with websocket(server.base_url, kit_id, editor) as ws:
            messages = await opened(ws)
            assert messages[-1]["data"]["users"] == [{"userId": owner}, {"userId": editor}]
            await stream.presence(lambda users: len(users) == 2)
            await ws.send(json.dumps({"type": "focus", "field": "heightCm"}))
            await stream.presence(lambda users: {"userId": editor, "field": "heightCm"} in users)
            await ws.send(json.dumps({"type": "focus", "field": None}))
            await stream.presence(lambda users: {"userId": editor} in users)
        await stream.presence(lambda users: users == [{"userId": owner}])


# -- limits --------------------------------------------------------------------------------


async def test_room_limit_counts_sse_and_websocket_together(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner, editor = new_user(), new_user("editor")
    kit_id = await claimed_kit(http, owner, (editor, "editor"))
    assert ROOM_LIMIT == 3
    async with (
        sse(server.base_url, kit_id, owner) as first,
        websocket(server.base_url, kit_id, editor) as second,
        sse(server.base_url, kit_id, editor, query_token=True) as third,
    ):
        await first.event("presence")
        await opened(second)
        assert third.response.status_code == 200
        async with sse(server.base_url, kit_id, editor) as fourth:
            assert fourth.response.status_code == 429
            problem = fourth.response.json()
            assert (problem["code"], problem["type"]) == ("room-full", "/problems/room-full")
        async with websocket(server.base_url, kit_id, owner) as fifth:
            message, code, reason = await refused(fifth)
        assert message["problem"]["code"] == "room-full"
        assert (code, reason) == (4429, "room-full")
        # The members already in are unaffected.
        await patch(http, kit_id, owner, {"heightCm": 170})
        assert (await first.event("updated")).id == "1"
        assert (await receive_type(second, "updated"))["id"] == "1"
        assert (await third.event("updated")).id == "1"
    # All left: the room's count went back down (no leak), so a full room can join again.
    await assert_admitted(server, kit_id, owner)


async def assert_admitted(server: ServerProcess, kit_id: str, user: str) -> None:
    """A room's worth of new connections fits (retrying while the server notices disconnects)."""
    deadline = time.monotonic() + 5
    while True:
        async with (
            sse(server.base_url, kit_id, user) as one,
            sse(server.base_url, kit_id, user) as two,
            sse(server.base_url, kit_id, user) as three,
        ):
            statuses = [s.response.status_code for s in (one, two, three)]
        if statuses == [200] * ROOM_LIMIT:
            return
        assert time.monotonic() < deadline, f"the room stayed full: {statuses}"
        await asyncio.sleep(0.1)


async def test_dropped_websockets_give_their_places_back(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(http, owner)
    for _round in range(3):
        async with (
            websocket(server.base_url, kit_id, owner) as a,
            websocket(server.base_url, kit_id, owner) as b,
            websocket(server.base_url, kit_id, owner) as c,
        ):
            for ws in (a, b, c):
                await opened(ws)
    await assert_admitted(server, kit_id, owner)


async def test_connection_lifetime_ends_with_a_retry_hint(tmp_path: Path) -> None:
    """Independent of the database: runs once, on SQLite."""
    process = start(
        sqlite_url(tmp_path), tmp_path, HEALTHINFO_REALTIME_MAX_CONNECTION_SECONDS="1.5"
    )
    try:
        owner = new_user()
        async with httpx.AsyncClient(base_url=process.base_url, timeout=10) as http:
            kit_id = await claimed_kit(http, owner)
        started = time.monotonic()
        async with (
            sse(process.base_url, kit_id, owner) as stream,
            websocket(process.base_url, kit_id, owner) as ws,
        ):
            frames = await stream.until_end()
            last = frames[-1]
            assert "closing lifetime" in last.comments
            assert last.retry is not None
            assert 1.4 < time.monotonic() - started < 5
            assert await until_closed(ws) == (1000, "lifetime")
    finally:
        process.stop()


# -- logs and shutdown ---------------------------------------------------------------------


async def test_the_access_token_never_reaches_the_log(
    server: ServerProcess, http: httpx.AsyncClient
) -> None:
    owner = new_user()
    kit_id = await claimed_kit(http, owner)
    secret = token(owner)
    async with sse(server.base_url, kit_id, params={"access_token": secret}) as stream:
        assert stream.response.status_code == 200
        await stream.event("presence")
    async with websocket(server.base_url, kit_id, query=f"access_token={secret}") as ws:
        await opened(ws)
    await asyncio.sleep(0.3)
    log = server.log.read_text()
    # Both connections were logged (by whichever logger), and the token was not.
    assert "health-information/events" in log
    assert "/ws?access_token=[redacted]" in log  # uvicorn's WebSocket line quotes the query
    assert secret not in log
    assert secret.split(".")[2] not in log  # not even the signature


async def test_sigterm_closes_streams_with_a_retry_hint_and_loses_no_write(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, server: ServerProcess
) -> None:
    process = start(database_url, tmp_path_factory.mktemp("sigterm"))
    owner, editor = new_user(), new_user("editor")
    async with httpx.AsyncClient(base_url=process.base_url, timeout=10) as http:
        kit_id = await claimed_kit(http, owner, (editor, "editor"))
        acknowledged: list[int] = []
        some_written = asyncio.Event()

        async def rest_writes() -> None:
            for height in range(100, 200):
                try:
                    response = await http.patch(
                        url(kit_id), json={"answers": {"heightCm": height}}, headers=auth(owner)
                    )
                except httpx.HTTPError:
                    return
                if response.status_code != 200:
                    return
                acknowledged.append(response.json()["version"])
                if len(acknowledged) >= 5:
                    some_written.set()

        async def websocket_writes(ws: ClientConnection) -> int | None:
            """Updates one after the other until the server closes; its close code."""
            weight = 40
            with contextlib.suppress(ConnectionClosed):
                while True:
                    weight = weight % 200 + 1
                    reply = await request(ws, {"type": "update", "answers": {"weightKg": weight}})
                    assert reply["type"] == "ack", reply
                    acknowledged.append(reply["version"])
            return ws.close_code

        try:
            async with (
                sse(process.base_url, kit_id, owner) as stream,
                websocket(process.base_url, kit_id, editor) as ws,
            ):
                await stream.event("presence")
                await opened(ws)
                writer = asyncio.create_task(rest_writes())
                ws_writer = asyncio.create_task(websocket_writes(ws))
                await asyncio.wait_for(some_written.wait(), timeout=10)
                started = time.monotonic()
                assert process.process is not None
                process.process.terminate()
                frames = await stream.until_end()
                assert "closing shutdown" in frames[-1].comments
                assert frames[-1].retry is not None
                assert await ws_writer == 1012
                await writer
                # uvicorn re-raises the signal once it has shut down gracefully.
                assert process.process.wait(timeout=10) in (0, -signal.SIGTERM)
                assert time.monotonic() - started < 8
                assert "Application shutdown complete" in process.log.read_text()
        finally:
            process.stop()

    # Every acknowledged write is in the database (read through another server on it).
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        history = await http.get(url(kit_id, "/history?limit=500"), headers=auth(owner))
    versions = sorted(item["version"] for item in history.json()["items"])
    assert set(acknowledged) <= set(versions)
    assert versions == list(range(1, len(versions) + 1))
