"""Acknowledged writes survive SIGKILL of the server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess
from tests.support.tokens import auth

KITS = 12
WRITES_PER_KIT = 8


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url=database_url, data_dir=tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()


async def test_acknowledged_writes_survive_sigkill_and_read_back_identical(
    server: ServerProcess, kit_id: str
) -> None:
    kits = [f"{kit_id}-{i}" for i in range(KITS)]
    acknowledged: dict[str, dict[str, object]] = {}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:

        async def write_kit(kit: str) -> None:
            for step in range(WRITES_PER_KIT):
                response = await client.patch(
                    f"/v1/kits/{kit}/health-information",
                    json={"answers": {"heightCm": 150 + step, "additionalNotes": f"note {step}"}},
                    headers=auth("durable-user"),
                )
                assert response.status_code == 200
                acknowledged[kit] = response.json()

        await asyncio.gather(*(write_kit(kit) for kit in kits))

    server.kill()
    server.start()

    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        for kit in kits:
            response = await client.get(
                f"/v1/kits/{kit}/health-information", headers=auth("durable-user")
            )
            assert response.status_code == 200
            assert response.json() == acknowledged[kit]
            history = await client.get(
                f"/v1/kits/{kit}/health-information/history", headers=auth("durable-user")
            )
            assert [i["version"] for i in history.json()["items"]] == list(
                range(WRITES_PER_KIT, 0, -1)
            )
