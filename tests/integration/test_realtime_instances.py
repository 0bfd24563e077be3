"""Two ``healthinfo serve`` processes on one database and one Redis: one room across instances.

A write on one instance reaches SSE and WebSocket clients on the other; presence and the room
limit span both. The shared Redis (``HEALTHINFO_TEST_REDIS_URL``) is used with a key prefix of
this run's own, whose keys are deleted afterwards (never FLUSHALL). The outage test runs its own
redis-server, which it stops and restarts: a change made while the bus was down reaches the
other instance's subscriber from the database once the bus is back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from tests.support.backends import REDIS_URL, require_reachable, sqlite_url
from tests.support.live import (
    STARTUP_SECONDS,
    SseStream,
    opened,
    receive_type,
    refused,
    request,
    sse,
    until_closed,
    websocket,
)
from tests.support.redis_server import PrivateRedis
from tests.support.server import ServerProcess
from tests.support.tokens import auth

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def instance_env(redis_url: str, prefix: str) -> dict[str, str]:
    return {
        "HEALTHINFO_REDIS_URL": redis_url,
        "HEALTHINFO_REDIS_KEY_PREFIX": prefix,
        "HEALTHINFO_ROOM_LIMIT": "3",
        "HEALTHINFO_REALTIME_PING_SECONDS": "0.5",
        "HEALTHINFO_REALTIME_PRESENCE_TTL_SECONDS": "3",
    }


def start_pair(
    database_url: str, data_dir: Path, env: dict[str, str]
) -> tuple[ServerProcess, ServerProcess]:
    first = ServerProcess(database_url=database_url, data_dir=data_dir, extra_env=env)
    first.start(timeout=STARTUP_SECONDS)  # one at a time: the first applies the migrations
    second = ServerProcess(database_url=database_url, data_dir=data_dir, extra_env=env)
    try:
        second.start(timeout=STARTUP_SECONDS)
    except BaseException:
        first.stop()
        raise
    return first, second


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    parts = urlsplit(REDIS_URL)
    require_reachable(parts.hostname or "127.0.0.1", parts.port or 6379, "Redis")
    chosen = f"healthinfo-test-{uuid.uuid4().hex[:12]}:"
    yield chosen
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=chosen + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def pair(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, prefix: str
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    first, second = start_pair(
        database_url, tmp_path_factory.mktemp("pair"), instance_env(REDIS_URL, prefix)
    )
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


@pytest.fixture
async def http(pair: tuple[ServerProcess, ServerProcess]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pair[0].base_url, timeout=10) as client:
        yield client


def new_user(role: str = "user") -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


def url(kit_id: str) -> str:
    return f"/v1/kits/{kit_id}/health-information"


async def claimed_kit(http: httpx.AsyncClient, owner: str, *editors: str) -> str:
    kit_id = f"KIT-{uuid.uuid4().hex[:12]}"
    assert (await http.post(f"/v1/kits/{kit_id}/claim", headers=auth(owner))).status_code == 201
    for editor in editors:
        response = await http.put(
            f"/v1/kits/{kit_id}/members/{editor}", json={"role": "editor"}, headers=auth(owner)
        )
        assert response.status_code in (200, 201)
    return kit_id


async def test_a_write_on_one_instance_reaches_clients_of_the_other(
    pair: tuple[ServerProcess, ServerProcess], http: httpx.AsyncClient
) -> None:
    a, b = pair
    owner, editor, other = new_user("a"), new_user("b"), new_user("c")
    kit_id = await claimed_kit(http, owner, editor, other)
    async with (
        sse(b.base_url, kit_id, owner, query_token=True) as stream,
        websocket(b.base_url, kit_id, editor) as ws,
    ):
        await stream.event("presence")
        await opened(ws)
        response = await http.patch(
            url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(owner)
        )
        assert response.status_code == 200
        sse_event = await stream.event("updated")
        ws_event = await receive_type(ws, "updated")
        assert (sse_event.id, ws_event["id"]) == ("1", "1")
        assert sse_event.data == ws_event["data"]
        assert sse_event.data["answers"] == {"heightCm": 170}

        async with websocket(a.base_url, kit_id, other) as writer:
            await opened(writer)
            # Presence spans instances: B's subscriber sees the connection made on A.
            names = [owner, editor, other]
            await stream.presence(lambda users: [u["userId"] for u in users] == names)
            await writer.send('{"type": "focus", "field": "weightKg"}')
            await stream.presence(lambda users: {"userId": other, "field": "weightKg"} in users)
            ack = await request(writer, {"type": "update", "answers": {"weightKg": 60}})
            assert ack["version"] == 2
        event = await stream.event("updated")
        assert (event.id, event.data["channel"], event.data["by"]) == ("2", "websocket", other)
        assert (await receive_type(ws, "updated"))["id"] == "2"


async def test_the_bus_carries_no_answer_in_clear_and_still_delivers(
    pair: tuple[ServerProcess, ServerProcess], http: httpx.AsyncClient, prefix: str
) -> None:
    _a, b = pair
    owner = new_user()
    kit_id = await claimed_kit(http, owner)
    wire = aioredis.Redis.from_url(REDIS_URL)
    tap = wire.pubsub()
    await tap.psubscribe(prefix + "events:*")
    try:
        async with sse(b.base_url, kit_id, owner) as stream:
            await stream.event("presence")
            response = await http.patch(
                url(kit_id), json={"answers": {"dateOfBirth": "1987-03-21"}}, headers=auth(owner)
            )
            assert response.status_code == 200
            event = await stream.event("updated")
            assert event.data["answers"] == {"dateOfBirth": "1987-03-21"}
        # B's stream got the update, so it crossed the bus: read every message the tap holds.
        seen: list[bytes] = []
        channel = f"{prefix}events:{kit_id}".encode()
        while (message := await tap.get_message(timeout=1.0)) is not None:
            if message["type"] == "pmessage" and message["channel"] == channel:
                seen.append(message["data"])
    finally:
        await tap.aclose()
        await wire.aclose()
    assert seen, "no message of the kit crossed the bus"
    assert all(m.startswith(b"hb1:") for m in seen)
    assert not [m for m in seen if b"1987-03-21" in m or b"dateOfBirth" in m]


async def test_the_room_limit_holds_across_instances(
    pair: tuple[ServerProcess, ServerProcess], http: httpx.AsyncClient
) -> None:
    a, b = pair
    owner = new_user()
    kit_id = await claimed_kit(http, owner)
    async with (
        sse(a.base_url, kit_id, owner) as one,
        sse(b.base_url, kit_id, owner) as two,
    ):
        assert (one.response.status_code, two.response.status_code) == (200, 200)
        async with websocket(a.base_url, kit_id, owner) as three:
            await opened(three)
            async with sse(b.base_url, kit_id, owner) as four:
                assert four.response.status_code == 429
                assert four.response.json()["code"] == "room-full"
            async with websocket(b.base_url, kit_id, owner) as five:
                message, code, _reason = await refused(five)
            assert (message["problem"]["code"], code) == ("room-full", 4429)
        # The WebSocket on A left: a connection on B fits again.
        deadline = time.monotonic() + 5
        while True:
            async with sse(b.base_url, kit_id, owner) as again:
                if again.response.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the place on A was never given back"
            await asyncio.sleep(0.1)


async def test_changes_made_while_the_bus_was_down_arrive_from_the_database(
    tmp_path: Path,
) -> None:
    private = PrivateRedis(tmp_path)
    private.start()
    try:
        a, b = start_pair(
            sqlite_url(tmp_path), tmp_path, instance_env(private.url, "healthinfo-outage:")
        )
        try:
            await lost_message_is_recovered(a, b, private)
        finally:
            a.stop()
            b.stop()
    finally:
        private.stop()


async def lost_message_is_recovered(
    a: ServerProcess, b: ServerProcess, private: PrivateRedis
) -> None:
    owner = new_user()
    async with httpx.AsyncClient(base_url=a.base_url, timeout=10) as http:
        kit_id = await claimed_kit(http, owner)
        async with sse(b.base_url, kit_id, owner) as stream:
            await stream.event("presence")
            await http.patch(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(owner))
            assert (await stream.event("updated")).id == "1"

            private.stop()  # the bus is gone: A cannot tell B about the next write
            response = await http.patch(
                url(kit_id), json={"answers": {"heightCm": 171}}, headers=auth(owner)
            )
            assert response.status_code == 200  # a bus outage never fails a write
            private.start()

            # B re-subscribes, then re-reads what its streams may have missed from the database.
            event = await stream.event("updated", within=15)
            assert (event.id, event.data["answers"]) == ("2", {"heightCm": 171})
            await http.patch(url(kit_id), json={"answers": {"heightCm": 172}}, headers=auth(owner))
            assert (await stream.event("updated")).id == "3"


# -- access changes across instances -------------------------------------------------------


async def add_viewer(http: httpx.AsyncClient, kit_id: str, owner: str, viewer: str) -> None:
    response = await http.put(
        f"/v1/kits/{kit_id}/members/{viewer}", json={"role": "viewer"}, headers=auth(owner)
    )
    assert response.status_code == 201


async def remove_member(http: httpx.AsyncClient, kit_id: str, owner: str, user: str) -> None:
    response = await http.delete(f"/v1/kits/{kit_id}/members/{user}", headers=auth(owner))
    assert response.status_code == 204


async def until_revoked(stream: SseStream, within: float) -> tuple[dict[str, Any], list[str]]:
    """The ``revoked`` event's problem, and the events sent before the stream ended."""
    frames = await stream.until_end(within=within)
    assert stream.ended, "the stream did not end"
    assert frames[-1].event == "revoked", [f.event for f in frames]
    names = [f.event for f in frames[:-1] if f.event is not None]
    return frames[-1].data, names


async def test_a_removal_on_one_instance_ends_the_member_s_streams_on_the_other(
    pair: tuple[ServerProcess, ServerProcess], http: httpx.AsyncClient
) -> None:
    """Within a second, and the write that commits right after the removal, through the
    member's own instance, never reaches them."""
    _a, b = pair
    owner, viewer = new_user("a"), new_user("b")
    kit_id = await claimed_kit(http, owner)
    await add_viewer(http, kit_id, owner, viewer)
    async with (
        sse(b.base_url, kit_id, viewer) as stream,
        websocket(b.base_url, kit_id, viewer) as ws,
        httpx.AsyncClient(base_url=b.base_url, timeout=10) as on_b,
    ):
        await stream.event("presence")
        await opened(ws)
        await remove_member(http, kit_id, owner, viewer)  # through A
        started = time.monotonic()
        write = await on_b.patch(
            url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(owner)
        )
        assert write.status_code == 200
        problem, sent = await until_revoked(stream, within=1.5)
        assert time.monotonic() - started < 1.5
        assert problem["code"] == "forbidden"
        assert "updated" not in sent
        assert await until_closed(ws) == (4403, "forbidden")


async def test_an_erasure_on_one_instance_ends_every_stream_of_the_kit_on_the_other(
    pair: tuple[ServerProcess, ServerProcess], http: httpx.AsyncClient
) -> None:
    """Within a second; the answers saved anew right after, through the streams' own
    instance, never reach them."""
    _a, b = pair
    owner, viewer = new_user("a"), new_user("b")
    kit_id = await claimed_kit(http, owner)
    await add_viewer(http, kit_id, owner, viewer)
    await http.patch(url(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(owner))
    async with (
        sse(b.base_url, kit_id, viewer) as stream,
        websocket(b.base_url, kit_id, owner) as ws,
        httpx.AsyncClient(base_url=b.base_url, timeout=10) as on_b,
    ):
        await stream.event("presence")
        await opened(ws)
        erased = await http.delete(url(kit_id), headers=auth(owner))  # through A
        assert erased.status_code == 204, erased.text
        started = time.monotonic()
        write = await on_b.patch(
            url(kit_id), json={"answers": {"heightCm": 150}}, headers=auth(owner)
        )
        assert write.status_code == 200
        problem, sent = await until_revoked(stream, within=1.5)
        assert time.monotonic() - started < 1.5
        assert (problem["status"], problem["code"]) == (404, "not-found")
        assert "updated" not in sent
        assert (await until_closed(ws))[0] == 4404


async def test_with_the_bus_down_a_removal_still_ends_streams_within_five_seconds(
    tmp_path: Path,
) -> None:
    private = PrivateRedis(tmp_path)
    private.start()
    try:
        a, b = start_pair(
            sqlite_url(tmp_path), tmp_path, instance_env(private.url, "healthinfo-recheck:")
        )
        try:
            await removal_without_a_bus(a, b, private)
        finally:
            a.stop()
            b.stop()
    finally:
        private.stop()


async def removal_without_a_bus(a: ServerProcess, b: ServerProcess, private: PrivateRedis) -> None:
    owner, viewer = new_user("a"), new_user("b")
    async with httpx.AsyncClient(base_url=a.base_url, timeout=10) as http:
        kit_id = await claimed_kit(http, owner)
        await add_viewer(http, kit_id, owner, viewer)
        async with sse(b.base_url, kit_id, viewer) as stream:
            await stream.event("presence")
            private.stop()  # A cannot tell B about the removal
            await asyncio.sleep(1.0)  # B notices its lost subscription
            await remove_member(http, kit_id, owner, viewer)
            started = time.monotonic()
            problem, _sent = await until_revoked(stream, within=8)
            assert time.monotonic() - started < 5.5
            assert problem["code"] == "forbidden"
