"""A kit's audit trail keeps the order things happened, with reads batched.

A batched read event is written up to ``HEALTHINFO_AUDIT_READ_BATCH_MS`` after the read; a
write to the same kit in that window first commits the kit's queued read events
(``ReadAuditor.settle``), so the chain lists the read before the write that came after it.
The window here is 10 s: without the settling, the read would always land after the write.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.tokens import auth

READ = "health-information.read"
SAVE = "health-information.save"
PATCH = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
async def app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    application = create_app(make_settings(audit_reads="batched", audit_read_batch_ms=10_000))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with await open_client(app) as client:
        yield client


async def trail(http: httpx.AsyncClient, kit_id: str) -> list[tuple[str, int | None]]:
    """(action, versionAfter) of the kit's events, oldest first."""
    listed = await http.get(
        f"/v1/kits/{kit_id}/audit-events?limit=50", headers=auth("auditor-1", "auditor")
    )
    assert listed.status_code == 200
    return [(e["action"], e["versionAfter"]) for e in reversed(listed.json()["items"])]


async def test_a_read_is_listed_before_the_write_that_followed_it_within_the_batch_window(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    kit_id, user = f"KIT-{uuid.uuid4().hex[:12]}", f"user-{uuid.uuid4().hex[:8]}"
    url = f"/v1/kits/{kit_id}/health-information"
    created = await http.put(url, json={"answers": {"heightCm": 170}}, headers=auth(user))
    assert created.status_code == 201
    read = await http.get(url, headers=auth(user))
    assert read.status_code == 200
    assert app.state.services.read_audit.batcher.holds(kit_id)  # queued, not yet written
    patched = await http.patch(
        url, json={"answers": {"weightKg": 70}}, headers={**auth(user), **PATCH}
    )
    assert patched.status_code == 200
    assert not app.state.services.read_audit.batcher.holds(kit_id)
    events = [event for event in await trail(http, kit_id) if event[0] in (READ, SAVE)]
    assert events == [(SAVE, 1), (READ, 1), (SAVE, 2)]


async def test_a_write_to_another_kit_does_not_wait_for_this_kits_reads(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    read_kit, written_kit = (f"KIT-{uuid.uuid4().hex[:12]}" for _ in range(2))
    for kit_id in (read_kit, written_kit):
        url = f"/v1/kits/{kit_id}/health-information"
        assert (await http.put(url, json={"answers": {}}, headers=auth(user))).status_code == 201
    await http.get(f"/v1/kits/{read_kit}/health-information", headers=auth(user))
    patched = await http.patch(
        f"/v1/kits/{written_kit}/health-information",
        json={"answers": {"weightKg": 70}},
        headers={**auth(user), **PATCH},
    )
    assert patched.status_code == 200
    assert app.state.services.read_audit.batcher.holds(read_kit)  # still within its window
