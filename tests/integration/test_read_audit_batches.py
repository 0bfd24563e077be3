"""Batched read audit (HEALTHINFO_AUDIT_READS=batched, the default) through the public API.

A private ``healthinfo serve`` per test (tests/support/server.py) on each backend: a REST read,
a history version read and a stream opening are each audited within the batch window, without
anything asking for a flush (checked with SQL, not through the API); the audit events API shows
them; batched reads interleaved with writes on the same kit leave chains that
``healthinfo audit verify`` passes; a graceful stop (SIGTERM) under read load loses no event;
and ``sync`` still commits the event before the answer leaves.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.live import sse
from tests.support.read_audit import (
    READ,
    SAVE,
    Load,
    create_kit,
    path,
    read_loop,
    stored_request_ids,
    verify_chain,
    write_loop,
)
from tests.support.server import ServerProcess
from tests.support.tokens import auth

BATCH_MS = 50
# What "within the batch window" may take on a loaded, shared test machine: the window, the
# batch's one transaction, and scheduling slack.
WITHIN_SECONDS = BATCH_MS / 1000 + 0.5

ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def start_server(database_url: str, tmp_path: Path) -> Iterator[ServerFactory]:
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        server = ServerProcess(
            database_url=database_url,
            data_dir=tmp_path,
            extra_env={
                "HEALTHINFO_AUDIT_READ_BATCH_MS": str(BATCH_MS),
                "HEALTHINFO_RATE_LIMIT_ENABLED": "false",
                **env,
            },
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def owner() -> str:
    return f"owner-{uuid.uuid4().hex[:8]}"


async def stored_within(database_url: str, kit_id: str, request_id: str) -> bool:
    """Whether the read event of ``request_id`` is committed within the window (polling)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN_SECONDS
    while loop.time() < deadline:
        if request_id in await stored_request_ids(database_url, [kit_id], READ):
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_rest_read_is_audited_within_the_batch_window(
    start_server: ServerFactory, database_url: str, kit_id: str, owner: str
) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        await create_kit(client, kit_id, owner)
        response = await client.get(path(kit_id), headers=auth(owner))
    assert response.status_code == 200
    assert await stored_within(database_url, kit_id, response.headers["x-request-id"])


async def test_a_history_version_read_is_audited_within_the_batch_window(
    start_server: ServerFactory, database_url: str, kit_id: str, owner: str
) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        await create_kit(client, kit_id, owner)
        response = await client.get(path(kit_id, "/history/1"), headers=auth(owner))
    assert response.status_code == 200
    assert await stored_within(database_url, kit_id, response.headers["x-request-id"])


async def test_a_stream_opening_is_audited_within_the_batch_window(
    start_server: ServerFactory, database_url: str, kit_id: str, owner: str
) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        await create_kit(client, kit_id, owner)
    async with sse(server.base_url, kit_id, owner) as stream:
        assert stream.response.status_code == 200
        await stream.event("snapshot")
        request_id = stream.response.headers["x-request-id"]
        assert await stored_within(database_url, kit_id, request_id)


async def test_the_audit_events_api_shows_batched_reads_with_their_channel(
    start_server: ServerFactory, kit_id: str, owner: str
) -> None:
    server = start_server(HEALTHINFO_AUDIT_READ_BATCH_MS="5000")  # only the API's flush helps
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        await create_kit(client, kit_id, owner)
        read = await client.get(path(kit_id), headers=auth(owner))
        listed = await client.get(
            f"/v1/kits/{kit_id}/audit-events", headers=auth("auditor-1", "auditor")
        )
    assert listed.status_code == 200
    reads = [e for e in listed.json()["items"] if e["action"] == READ]
    assert [(e["requestId"], e["channel"], e["versionAfter"]) for e in reads] == [
        (read.headers["x-request-id"], "rest", 1)
    ]


async def test_batched_reads_interleaved_with_writes_on_one_kit_keep_the_chain_verifiable(
    start_server: ServerFactory, database_url: str, kit_id: str, owner: str
) -> None:
    server = start_server(HEALTHINFO_AUDIT_CHECKPOINT_INTERVAL="0.2")
    load, stop = Load(), asyncio.Event()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        await create_kit(client, kit_id, owner)
        tasks = [
            *(asyncio.create_task(read_loop(client, kit_id, owner, load, stop)) for _ in range(8)),
            *(asyncio.create_task(write_loop(client, kit_id, owner, load, stop)) for _ in range(2)),
        ]
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*tasks)
    server.stop()  # graceful: every queued read event is written
    assert len(load.reads) > 50
    assert len(load.writes) > 5
    assert set(load.reads) <= await stored_request_ids(database_url, [kit_id], READ)
    assert load.writes <= await stored_request_ids(database_url, [kit_id], SAVE)
    verified = verify_chain(server, kit_id)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout


async def test_a_graceful_stop_under_read_load_loses_no_read_event(
    start_server: ServerFactory, database_url: str, owner: str
) -> None:
    # A long window: at the SIGTERM, events are certainly still queued.
    server = start_server(HEALTHINFO_AUDIT_READ_BATCH_MS="2000")
    kits = [f"KIT-{uuid.uuid4().hex[:12]}" for _ in range(4)]
    load, stop = Load(), asyncio.Event()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        for kit in kits:
            await create_kit(client, kit, owner)
        tasks = [
            asyncio.create_task(read_loop(client, kit, owner, load, stop))
            for kit in kits
            for _ in range(3)
        ]
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.stop)  # SIGTERM while the readers are still reading
        stop.set()
        await asyncio.gather(*tasks)
    assert load.reads
    missing = set(load.reads) - await stored_request_ids(database_url, kits, READ)
    print(f"graceful stop: {len(load.reads)} reads answered, {len(missing)} without an event")
    assert missing == set()
    for kit in kits:
        verified = verify_chain(server, kit)
        assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_sync_read_auditing_commits_the_event_before_the_answer(
    start_server: ServerFactory, database_url: str, kit_id: str, owner: str
) -> None:
    server = start_server(HEALTHINFO_AUDIT_READS="sync")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        await create_kit(client, kit_id, owner)
        response = await client.get(path(kit_id), headers=auth(owner))
        # No waiting: the answer left after the commit.
        stored = await stored_request_ids(database_url, [kit_id], READ)
    assert response.headers["x-request-id"] in stored


async def test_reads_leave_no_event_when_read_auditing_is_off(
    start_server: ServerFactory, database_url: str, kit_id: str, owner: str
) -> None:
    server = start_server(HEALTHINFO_AUDIT_READS="off")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        await create_kit(client, kit_id, owner)
        assert (await client.get(path(kit_id), headers=auth(owner))).status_code == 200
    server.stop()
    assert await stored_request_ids(database_url, [kit_id], READ) == set()
