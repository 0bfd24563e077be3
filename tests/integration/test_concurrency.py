"""No lost updates: concurrent writers against the same version, on SQLite and PostgreSQL.

The requests really overlap: they run concurrently in one event loop, each on its own
database connection (aiosqlite runs each connection in its own thread; asyncpg pools).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from tests.support.tokens import auth

WRITERS = 24


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


async def history_versions(client: httpx.AsyncClient, kit_id: str, user: str) -> list[int]:
    page = (await client.get(url(kit_id, "/history?limit=500"), headers=auth(user))).json()
    return [item["version"] for item in page["items"]]


async def test_concurrent_if_match_writers_on_one_version_exactly_one_wins(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.put(url(kit_id), json={"answers": {"heightCm": 100}}, headers=auth(user))
    headers = {**auth(user), "If-Match": '"1"'}

    async def write(height: int) -> httpx.Response:
        return await client.patch(
            url(kit_id), json={"answers": {"heightCm": height}}, headers=headers
        )

    responses = await asyncio.gather(*(write(150 + i) for i in range(WRITERS)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 412: WRITERS - 1}
    winner = next(r for r in responses if r.status_code == 200).json()
    current = (await client.get(url(kit_id), headers=auth(user))).json()
    assert current["version"] == 2
    assert current["answers"] == winner["answers"]
    assert await history_versions(client, kit_id, user) == [2, 1]


async def test_concurrent_base_version_writers_on_one_question_exactly_one_wins(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await client.put(url(kit_id), json={"answers": {"heightCm": 100}}, headers=auth(user))

    async def write(height: int) -> httpx.Response:
        body = {"answers": {"heightCm": height}, "baseVersion": 1}
        return await client.patch(url(kit_id), json=body, headers=auth(user))

    responses = await asyncio.gather(*(write(150 + i) for i in range(WRITERS)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: WRITERS - 1}
    assert all(r.json()["code"] == "edit-conflict" for r in responses if r.status_code == 409)
    assert (await client.get(url(kit_id), headers=auth(user))).json()["version"] == 2


async def test_concurrent_last_writer_wins_patches_all_land_in_distinct_versions(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    """Writers on different questions with no precondition: every write is kept, none lost."""
    await client.put(url(kit_id), json={"answers": {}}, headers=auth(user))
    questions = ["heightCm", "cigarettesPerDay", "yearsSmoked", "drinksPerWeek", "fastingHours"]

    async def write(i: int) -> httpx.Response:
        question = questions[i % len(questions)]
        return await client.patch(url(kit_id), json={"answers": {question: i}}, headers=auth(user))

    responses = await asyncio.gather(*(write(40 + i) for i in range(WRITERS)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    acknowledged = sorted(r.json()["version"] for r in responses)
    assert acknowledged == list(range(2, WRITERS + 2)), "two writes acknowledged one version"
    assert await history_versions(client, kit_id, user) == list(range(WRITERS + 1, 0, -1))
    final = (await client.get(url(kit_id), headers=auth(user))).json()
    by_version = {r.json()["version"]: r.json()["answers"] for r in responses}
    assert final["answers"] == by_version[WRITERS + 1]


async def test_concurrent_first_saves_create_version_1_once(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    async def write(height: int) -> httpx.Response:
        return await client.put(
            url(kit_id), json={"answers": {"heightCm": height}}, headers=auth(user)
        )

    responses = await asyncio.gather(*(write(150 + i) for i in range(WRITERS)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses[201] == 1
    assert statuses[200] == WRITERS - 1
    versions = sorted(r.json()["version"] for r in responses)
    assert versions == list(range(1, WRITERS + 1))


async def test_concurrent_claims_by_different_users_have_one_owner(
    client: httpx.AsyncClient, kit_id: str
) -> None:
    users = [f"claimer-{i}" for i in range(WRITERS)]
    responses = await asyncio.gather(
        *(client.post(f"/v1/kits/{kit_id}/claim", headers=auth(u)) for u in users)
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: WRITERS - 1}


@pytest.mark.parametrize("writers", [WRITERS])
async def test_concurrent_submit_and_edit_never_change_submitted_data(
    client: httpx.AsyncClient, kit_id: str, user: str, writers: int
) -> None:
    from tests.support.answers import COMPLETE

    await client.put(url(kit_id), json={"answers": COMPLETE}, headers=auth(user))

    async def edit(i: int) -> httpx.Response:
        return await client.patch(
            url(kit_id), json={"answers": {"heightCm": 100 + i}}, headers=auth(user)
        )

    submit = client.post(url(kit_id, "/submit"), headers=auth(user))
    responses = await asyncio.gather(submit, *(edit(i) for i in range(writers)))
    assert responses[0].status_code == 200
    submitted_version = responses[0].json()["version"]
    final = (await client.get(url(kit_id), headers=auth(user))).json()
    assert final["status"] == "submitted"
    assert final["version"] == submitted_version
    assert final["answers"] == responses[0].json()["answers"]
    for r in responses[1:]:
        assert r.status_code in (200, 409)
        if r.status_code == 200:
            assert r.json()["version"] < submitted_version
