"""The fault proxy itself: each mode does what the fault suite relies on it to do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.support.fault_proxy import FaultProxy


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
def proxy(echo_port: int) -> Iterator[FaultProxy]:
    running = FaultProxy("127.0.0.1", echo_port, name="test-proxy")
    running.start()
    try:
        yield running
    finally:
        running.close()


async def roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    finally:
        writer.close()


async def test_pass_forwards_both_ways(proxy: FaultProxy) -> None:
    assert await roundtrip(proxy.port, b"hello") == b"hello"


async def test_delay_holds_every_chunk_in_both_directions(proxy: FaultProxy) -> None:
    proxy.delay(150)
    started = time.monotonic()
    assert await roundtrip(proxy.port) == b"ping"
    assert time.monotonic() - started >= 0.3  # 150 ms there, 150 ms back
    proxy.pass_()
    started = time.monotonic()
    await roundtrip(proxy.port)
    assert time.monotonic() - started < 0.3


async def test_cut_resets_open_connections_and_accepts_new_ones(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"x")
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(1), 5) == b"x"
    proxy.cut()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(reader.readexactly(1), 5)  # reset or EOF, never a hang
    writer.close()
    assert await roundtrip(proxy.port) == b"ping"


async def test_refuse_refuses_new_connections_until_pass(proxy: FaultProxy) -> None:
    proxy.refuse()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", proxy.port)
    proxy.pass_()
    assert await roundtrip(proxy.port) == b"ping"


async def test_postgres_starting_up_answers_like_a_starting_server() -> None:
    """asyncpg sees exactly what a PostgreSQL server that is starting up sends."""
    running = FaultProxy("127.0.0.1", 9, name="pg-starting")  # never contacted in this mode
    running.start()
    try:
        running.postgres_starting_up()
        with pytest.raises(asyncpg.exceptions.CannotConnectNowError):
            await asyncpg.connect(host="127.0.0.1", port=running.port, user="postgres", timeout=5)
    finally:
        running.close()
