"""Helpers for the read-audit tests: load a private server with reads (and writes) and count,
from the database itself, which answered requests left an audit event."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.server import ServerProcess
from tests.support.tokens import auth

READ = "health-information.read"
SAVE = "health-information.save"


@dataclass
class Load:
    """What the clients saw: request ids of answered reads (with when) and of saved writes."""

    reads: dict[str, float] = field(default_factory=dict)  # request id -> monotonic answer time
    writes: set[str] = field(default_factory=set)
    errors: int = 0


def path(kit_id: str, tail: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{tail}"


async def create_kit(client: httpx.AsyncClient, kit_id: str, owner: str) -> None:
    response = await client.put(
        path(kit_id), json={"answers": {"heightCm": 170}}, headers=auth(owner)
    )
    assert response.status_code == 201, response.text


async def read_loop(
    client: httpx.AsyncClient, kit_id: str, owner: str, load: Load, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            response = await client.get(path(kit_id), headers=auth(owner))
        except httpx.HTTPError:
            load.errors += 1
            await asyncio.sleep(0.01)
            continue
        if response.status_code == 200:
            load.reads[response.headers["x-request-id"]] = time.monotonic()


async def write_loop(
    client: httpx.AsyncClient, kit_id: str, owner: str, load: Load, stop: asyncio.Event
) -> None:
    step = 0
    while not stop.is_set():
        step += 1
        try:
            response = await client.patch(
                path(kit_id), json={"answers": {"heightCm": 100 + step % 150}}, headers=auth(owner)
            )
        except httpx.HTTPError:
            load.errors += 1
            await asyncio.sleep(0.01)
            continue
        if response.status_code == 200:
            load.writes.add(response.headers["x-request-id"])
        await asyncio.sleep(0.01)


async def stored_request_ids(database_url: str, kit_ids: list[str], action: str) -> set[str]:
    """Request ids of the kits' audit events with ``action``, read with SQL."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            found: set[str] = set()
            for kit_id in kit_ids:
                rows = await connection.execute(
                    text("SELECT request_id FROM audit_events WHERE kit_id = :k AND action = :a"),
                    {"k": kit_id, "a": action},
                )
                found.update(row.request_id for row in rows)
            return found
    finally:
        await engine.dispose()


def verify_chain(server: ServerProcess, kit_id: str) -> subprocess.CompletedProcess[str]:
    """``healthinfo audit verify --kit`` as an operator runs it, checkpoints included."""
    return subprocess.run(
        [sys.executable, "-m", "healthinfo", "audit", "verify", "--kit", kit_id],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
