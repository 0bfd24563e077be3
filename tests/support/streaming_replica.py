"""A private PostgreSQL primary and a streaming replica of it, made the way an operator makes one.

The primary is a ``PrivatePostgres`` that ships WAL to replicas. The replica is a base backup of
it (``pg_basebackup -R``, which writes ``standby.signal`` and ``primary_conninfo``) in a
directory of its own, started on another port with ``hot_standby`` on. Replay can be paused and
resumed, to make the replica lag on demand, and the replica can be stopped and started again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from tests.support.private_postgres import PrivatePostgres

REPLAY_TIMEOUT_SECONDS = 15.0


class PrimaryPostgres(PrivatePostgres):
    def _options(self) -> str:
        return f"{super()._options()} -c wal_level=replica -c max_wal_senders=4"


class StandbyPostgres(PrivatePostgres):
    def __init__(self, primary: PrivatePostgres) -> None:
        super().__init__()
        self.primary = primary

    def start(self) -> None:
        if not self.data.exists():
            self._run(
                str(self.bin / "pg_basebackup"),
                "-D",
                str(self.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.primary.port),
                "-U",
                "postgres",
                "-R",  # standby.signal + primary_conninfo: it starts as a streaming replica
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            )
        super().start()

    def halt(self) -> None:
        """Stop the server, keeping its data so that ``start`` brings the same replica back."""
        self._pg_ctl("-t", "60", "-m", "immediate", "stop")

    def _options(self) -> str:
        return f"{super()._options()} -c hot_standby=on"


async def query(dsn: str, sql: str, *args: Any) -> Any:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


class StreamingReplica:
    """A primary and one streaming replica, each a private cluster on a free port."""

    def __init__(self) -> None:
        self.primary = PrimaryPostgres()
        self.standby = StandbyPostgres(self.primary)

    def start(self) -> None:
        self.primary.start()
        self.standby.start()

    def stop(self) -> None:
        try:
            self.standby.stop()
        finally:
            self.primary.stop()

    async def caught_up(self) -> None:
        """Wait until the replica has replayed everything the primary has written so far."""
        target = await query(self.primary.dsn, "SELECT pg_current_wal_lsn()::text")
        deadline = time.monotonic() + REPLAY_TIMEOUT_SECONDS
        sql = "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn"
        while not await query(self.standby.dsn, sql, target):
            assert time.monotonic() < deadline, "the replica did not catch up"
            await asyncio.sleep(0.02)

    @asynccontextmanager
    async def replay_paused(self) -> AsyncIterator[None]:
        """The replica keeps receiving WAL but applies none of it until the block ends."""
        await query(self.standby.dsn, "SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + REPLAY_TIMEOUT_SECONDS
        while await query(self.standby.dsn, "SELECT pg_get_wal_replay_pause_state()") != "paused":
            assert time.monotonic() < deadline, "replay did not pause"
            await asyncio.sleep(0.02)
        try:
            yield
        finally:
            await query(self.standby.dsn, "SELECT pg_wal_replay_resume()")
