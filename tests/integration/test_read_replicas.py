"""History, audit and export reads on a real PostgreSQL streaming replica, never behind a write.

A private primary and a replica made from it with ``pg_basebackup -R`` (tests/support/
streaming_replica.py), each on a free port; the service runs in-process against both, with the
shared Redis. Pausing replay on the replica makes it lag on demand: the service must then notice
and read from the primary, so a client reads its own writes. PostgreSQL only (a SQLite file has no
replicas); missing server binaries fail the run rather than skip it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.bulk import manifest, resources, started
from tests.support.streaming_replica import StreamingReplica, query
from tests.support.tokens import auth

AUDITOR = auth("auditor-1", "auditor")
BEHIND_THE_BACK = "changed-behind-the-service"


@pytest.fixture(scope="module")
def cluster(database_url: str) -> Iterator[StreamingReplica]:
    if database_url.startswith("sqlite"):
        pytest.skip("streaming replicas are PostgreSQL's; the PostgreSQL run covers them")
    replicated = StreamingReplica()
    try:
        replicated.start()
        yield replicated
    finally:
        replicated.stop()


def settings_for(
    cluster: StreamingReplica, make_settings: Callable[..., Settings], **overrides: Any
) -> Settings:
    return make_settings(
        database_url=cluster.primary.url(),
        database_replica_urls=[cluster.standby.url()],
        db_timeout_seconds=2,
        **overrides,
    )


@pytest.fixture(scope="module")
def replicated_settings(
    cluster: StreamingReplica, make_settings: Callable[..., Settings]
) -> Settings:
    return settings_for(cluster, make_settings)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An instance of the service, in-process, and a client of it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app), await open_client(app) as client:
        yield client


@pytest.fixture(scope="module")
async def client(replicated_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """One instance for the module: its record of the kits it changed lives as long."""
    async with running(replicated_settings) as http:
        yield http


@pytest.fixture
async def other_instance(replicated_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second instance on the same databases and Redis: it knows nothing of the first's writes."""
    async with running(replicated_settings) as http:
        yield http


async def counted(http: httpx.AsyncClient, name: str, **labels: str) -> float:
    """A counter as /metrics shows it."""
    response = await http.get("/metrics")
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"/metrics has no {name} {labels}")


async def replica_reads(http: httpx.AsyncClient) -> float:
    return await counted(http, "healthinfo_replica_reads_total")


async def lagging(http: httpx.AsyncClient) -> float:
    return await counted(http, "healthinfo_replica_fallbacks_total", reason="lagging")


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


async def save(http: httpx.AsyncClient, kit_id: str, user: str, height: int) -> int:
    """A new version of the kit's answers (the first save claims the kit); its number."""
    body = {"answers": {"heightCm": height}}
    response = await http.patch(url(kit_id), json=body, headers=auth(user))
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


async def history(http: httpx.AsyncClient, kit_id: str, user: str) -> list[dict[str, Any]]:
    response = await http.get(url(kit_id, "/history"), headers=auth(user))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def audit_events(http: httpx.AsyncClient, kit_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"/v1/kits/{kit_id}/audit-events?limit=500", headers=AUDITOR)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def export(http: httpx.AsyncClient, kit_id: str, user: str) -> dict[str, Any]:
    response = await http.get(f"/v1/kits/{kit_id}/export", headers=auth(user))
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


async def test_history_audit_and_export_are_read_from_the_replica(
    cluster: StreamingReplica, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    """Proof by a change the service cannot know of: the replica does not show it until replay."""
    await save(client, kit_id, user, 180)
    await cluster.caught_up()
    before = await replica_reads(client)
    async with cluster.replay_paused():
        await query(
            cluster.primary.dsn,
            "UPDATE revisions SET by = $1 WHERE kit_id = $2",
            BEHIND_THE_BACK,
            kit_id,
        )
        await query(
            cluster.primary.dsn,
            "UPDATE audit_events SET user_agent = $1 WHERE kit_id = $2",
            BEHIND_THE_BACK,
            kit_id,
        )
        assert [item["by"] for item in await history(client, kit_id, user)] == [user]
        assert BEHIND_THE_BACK not in {e["userAgent"] for e in await audit_events(client, kit_id)}
        assert [item["by"] for item in (await export(client, kit_id, user))["history"]] == [user]
        assert await replica_reads(client) == before + 3
    await cluster.caught_up()
    assert [item["by"] for item in await history(client, kit_id, user)] == [BEHIND_THE_BACK]


async def exported_authors(http: httpx.AsyncClient, kit_id: str) -> list[str]:
    """The ``author`` of the kit's QuestionnaireResponse in a fresh Bulk Data export."""
    admin = auth("admin-exporter", "admin")
    status = await started(http, admin, "?_type=QuestionnaireResponse")
    found = await resources(
        http, await manifest(http, status, admin), admin, "QuestionnaireResponse"
    )
    mine = [r for r in found if r["identifier"]["value"] == kit_id]
    return [r["author"]["identifier"]["value"] for r in mine]


async def test_a_bulk_export_reads_its_pages_from_the_replica(
    cluster: StreamingReplica, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    """Proof by a change the service cannot know of: a page read on the replica shows the
    replica's data, not the primary's, until replay resumes (the export spares the primary)."""
    await save(client, kit_id, user, 180)
    await cluster.caught_up()
    async with cluster.replay_paused():
        await query(
            cluster.primary.dsn,
            "UPDATE health_information SET updated_by = $1 WHERE kit_id = $2",
            BEHIND_THE_BACK,
            kit_id,
        )
        assert await exported_authors(client, kit_id) == [user]
    await cluster.caught_up()
    assert await exported_authors(client, kit_id) == [BEHIND_THE_BACK]


async def test_a_write_is_read_back_while_the_replica_lags(
    cluster: StreamingReplica, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, 180)
    await cluster.caught_up()
    before = await lagging(client)
    async with cluster.replay_paused():
        version = await save(client, kit_id, user, 181)
        assert [item["version"] for item in await history(client, kit_id, user)] == [2, 1]
        saves = [e for e in await audit_events(client, kit_id) if e["versionAfter"] == version]
        assert [e["action"] for e in saves] == ["health-information.save"]
        assert (await export(client, kit_id, user))["healthInformation"]["version"] == version
        assert await lagging(client) == before + 3


async def test_one_version_of_the_history_is_read_back_while_the_replica_lags(
    cluster: StreamingReplica, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, 180)
    await cluster.caught_up()
    async with cluster.replay_paused():
        await save(client, kit_id, user, 181)
        response = await client.get(url(kit_id, "/history/2"), headers=auth(user))
        assert response.status_code == 200, response.text
        assert response.json()["answers"] == {"heightCm": 181}


async def test_a_member_added_while_the_replica_lags_is_in_the_export(
    cluster: StreamingReplica, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    """Members are not in the cache: this process's own record of its changes covers them."""
    await save(client, kit_id, user, 180)
    await cluster.caught_up()
    async with cluster.replay_paused():
        added = await client.put(
            f"/v1/kits/{kit_id}/members/carer", json={"role": "viewer"}, headers=auth(user)
        )
        assert added.status_code in (200, 201), added.text
        document = await export(client, kit_id, user)
    assert [member["userId"] for member in document["members"]] == ["carer"]


async def test_an_erasure_is_not_undone_by_a_lagging_replica(
    cluster: StreamingReplica, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, 180)
    await cluster.caught_up()
    async with cluster.replay_paused():
        assert (await client.delete(url(kit_id), headers=auth(user))).status_code == 204
        response = await client.get(url(kit_id, "/history"), headers=auth(user))
    assert response.status_code == 404


async def test_the_export_lists_its_own_audit_event_while_the_replica_lags(
    cluster: StreamingReplica, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, 180)
    await cluster.caught_up()
    before = await replica_reads(client)
    async with cluster.replay_paused():
        document = await export(client, kit_id, user)
    assert await replica_reads(client) == before + 1
    assert document["auditEvents"][-1]["action"] == "kit.export"
    await cluster.caught_up()
    assert (await export(client, kit_id, user))["auditEvents"][-2]["action"] == "kit.export"


async def test_a_write_through_another_instance_is_read_back_through_the_shared_cache(
    cluster: StreamingReplica,
    client: httpx.AsyncClient,
    other_instance: httpx.AsyncClient,
    kit_id: str,
    user: str,
) -> None:
    await save(other_instance, kit_id, user, 180)
    await cluster.caught_up()
    async with cluster.replay_paused():
        version = await save(other_instance, kit_id, user, 181)
        assert (await history(client, kit_id, user))[0]["version"] == version


async def test_without_the_shared_cache_another_instance_s_write_shows_after_replay(
    cluster: StreamingReplica, make_settings: Callable[..., Settings], kit_id: str, user: str
) -> None:
    """The documented limit: nothing tells this instance of that write until the replica has it."""
    no_cache = settings_for(cluster, make_settings, cache_enabled=False)
    async with running(no_cache) as writer, running(no_cache) as reader:
        await save(writer, kit_id, user, 180)
        await cluster.caught_up()
        async with cluster.replay_paused():
            await save(writer, kit_id, user, 181)
            assert (await history(reader, kit_id, user))[0]["version"] == 1
        await cluster.caught_up()
        assert (await history(reader, kit_id, user))[0]["version"] == 2


async def test_reads_return_to_the_replica_once_it_has_caught_up(
    cluster: StreamingReplica, client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await save(client, kit_id, user, 180)
    async with cluster.replay_paused():
        await save(client, kit_id, user, 181)
        await history(client, kit_id, user)
    await cluster.caught_up()
    before = await replica_reads(client)
    assert [item["version"] for item in await history(client, kit_id, user)] == [2, 1]
    assert await replica_reads(client) == before + 1


async def test_readiness_reports_the_replica(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["replicas"] == "ok"


async def test_reads_are_served_by_the_primary_while_the_replica_is_down(
    cluster: StreamingReplica, replicated_settings: Settings, kit_id: str, user: str
) -> None:
    async with running(replicated_settings) as http:
        await save(http, kit_id, user, 180)
        cluster.standby.halt()
        try:
            assert [item["version"] for item in await history(http, kit_id, user)] == [1]
            assert (
                await counted(http, "healthinfo_replica_fallbacks_total", reason="unavailable") == 1
            )
            ready = await http.get("/health/ready")
            assert ready.status_code == 200
            assert ready.json()["checks"]["replicas"] == "unavailable"
        finally:
            cluster.standby.start()
    await cluster.caught_up()
