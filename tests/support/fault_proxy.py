"""A TCP proxy that injects network faults between the service and PostgreSQL or Redis.

It runs its own event loop in a thread, so it keeps forwarding while the test's loop is busy (or
blocked in a subprocess call), and forwards bytes both ways between each accepted client and a
new connection to the upstream. Modes, switched at any time from any thread:

* ``pass``: forward as is;
* ``delay(ms)``: hold every chunk ``ms`` milliseconds before forwarding it (both directions);
* ``cut()``: abort every open connection now (both sides see a reset), keep accepting new ones;
* ``refuse()``: stop listening, so new connections are refused (ECONNREFUSED), and cut the open
  ones: the upstream is unreachable. ``pass_()`` listens again on the same port;
* ``postgres_starting_up()``: cut the open connections and answer each new one the way a
  PostgreSQL server that is starting up (or shutting down) does: an ``ErrorResponse`` with
  SQLSTATE 57P03 ``cannot_connect_now`` after the client's startup packet. A real restart shows
  this state only for a moment; the proxy holds it for as long as a test needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any

from tests.support.server import free_port

CHUNK = 65536
SSL_REQUEST_CODES = (80877103, 80877104)  # SSLRequest, GSSENCRequest
STARTING_UP = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0Rfault-proxy\0\0"


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, name: str = "proxy") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.name = name
        self.port = free_port()
        self.delay_seconds = 0.0
        self.starting_up = False
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()

    # -- lifecycle (call from any thread) ------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def close(self) -> None:
        try:
            self._call(self._stop_listening(cut=True))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    # -- modes -----------------------------------------------------------------------------------

    def pass_(self) -> None:
        """Forward without delay, and listen again if refusing."""
        self.delay_seconds = 0.0
        self.starting_up = False
        self._call(self._listen())

    def delay(self, milliseconds: float) -> None:
        self.delay_seconds = milliseconds / 1000

    def cut(self) -> None:
        self._call(self._cut())

    def postgres_starting_up(self) -> None:
        self.starting_up = True
        self.cut()

    def refuse(self) -> None:
        self._call(self._stop_listening(cut=True))

    @property
    def open_connections(self) -> int:
        return len(self._transports) // 2

    # -- inside the proxy's loop -----------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

    async def _stop_listening(self, *, cut: bool) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if cut:
            await self._cut()

    async def _cut(self) -> None:
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.starting_up:
            await self._refuse_as_starting_postgres(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer.transport, up_writer.transport}
        self._transports |= pair
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._transports -= pair
            for transport in pair:
                transport.abort()

    async def _refuse_as_starting_postgres(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Read the startup packet (declining SSL first), answer 57P03, close."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
            length = int.from_bytes(await reader.readexactly(4), "big")
            body = await reader.readexactly(length - 4)
            if length == 8 and int.from_bytes(body, "big") in SSL_REQUEST_CODES:
                writer.write(b"N")
                await writer.drain()
                length = int.from_bytes(await reader.readexactly(4), "big")
                await reader.readexactly(length - 4)
            writer.write(b"E" + (len(STARTING_UP) + 4).to_bytes(4, "big") + STARTING_UP)
            await writer.drain()
        writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                if self.delay_seconds:
                    await asyncio.sleep(self.delay_seconds)
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        # One side finished: end the other one too, so neither half stays open alone.
        writer.transport.abort()
