"""Forwarding submissions to the lab's API, end to end, on SQLite and on PostgreSQL.

The lab is a real HTTP server on 127.0.0.1 (``tests.support.lab``) that checks every signature
as docs/forwarding.md tells the lab to, and fails on purpose: 5xx, 408/429, permanent 4xx,
dropped connections, answers after the timeout, a closed port. Nothing is mocked: the app, its
relay, the database and the network are the real ones. Retries are in milliseconds
(``tests.support.forwarding.FAST``) so a test sees many of them.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from healthinfo.auth.actor import Actor
from healthinfo.common.clock import utc_now
from healthinfo.common.context import Channel, RequestContext
from healthinfo.crypto.factory import payload_codec
from healthinfo.forwarding.outbox import AMENDED, SUBMITTED
from healthinfo.forwarding.relay import build_relay
from healthinfo.forwarding.store import OUTBOX
from tests.conftest import open_client
from tests.support.answers import COMPLETE
from tests.support.backends import BACKENDS
from tests.support.forwarding import (
    FORWARD_SECRET,
    FULL,
    eventually,
    forwarding_settings,
    fresh_database,
    held_back,
    outbox_rows,
    services_of,
    submit,
)
from tests.support.lab import (
    Drop,
    Hang,
    Lab,
    Request,
    Respond,
    assert_delivered_once_each_in_kit_order,
)
from tests.support.legacy import DEPRECATION
from tests.support.problems import assert_problem, running_app
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio

ADMIN = auth("ops-admin", "admin")
EVENT_MEMBERS = ["eventId", "type", "occurredAt", "kitId", "version", "healthInformation"]


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async with Lab(FORWARD_SECRET.encode()) as running:
        yield running


@asynccontextmanager
async def forwarding_app(
    database: str, tmp_path: Path, lab: Lab, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = forwarding_settings(database, tmp_path / "data", lab.url, **overrides)
    async with running_app(settings) as app, await open_client(app) as client:
        yield app, client


async def states(app: FastAPI) -> dict[str, str]:
    return {row.event_id: row.state for row in await outbox_rows(app)}


def all_in(state: str, app: FastAPI, count: int) -> Any:
    async def check() -> bool:
        found = await states(app)
        return len(found) == count and set(found.values()) == {state}

    return check


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    response = await client.get("/metrics")
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


async def test_a_submission_is_forwarded_at_once_with_the_contract_body_and_signature(
    database: str, tmp_path: Path, lab: Lab, kit_id: str
) -> None:
    # Polling every 30 s: only the after-commit wake-up explains a delivery within 2 s.
    async with forwarding_app(database, tmp_path, lab, forward_poll_seconds=30) as (app, client):
        started = time.monotonic()
        submitted = await submit(client, kit_id)
        await lab.wait_for(lambda: len(lab.accepted) == 1, within=5)
        assert time.monotonic() - started < 2

        [request] = lab.requests
        event = request.event
        assert list(event) == EVENT_MEMBERS
        assert event["type"] == "health-information.submitted"
        assert event["kitId"] == kit_id
        assert event["version"] == submitted["version"]
        assert event["occurredAt"] == submitted["submittedAt"]
        current = await client.get(
            f"/v1/kits/{kit_id}/health-information", headers=auth("lab-user")
        )
        assert event["healthInformation"] == submitted == current.json()
        assert str(uuid.UUID(event["eventId"])) == event["eventId"]
        assert request.body == json.dumps(event, separators=(",", ":")).encode()

        assert request.headers["content-type"] == "application/json"
        assert request.headers["idempotency-key"] == event["eventId"]
        signature = re.fullmatch(
            r"t=(\d+),v1=([0-9a-f]{64})", request.headers["x-healthinfo-signature"]
        )
        assert signature is not None
        assert abs(int(signature[1]) - time.time()) < 60
        assert request.signature_valid

        await eventually(all_in("delivered", app, 1))
        listed = await client.get("/v1/admin/deliveries", headers=ADMIN)
        assert listed.status_code == 200, listed.text
        [item] = listed.json()["items"]
        assert listed.json()["nextCursor"] is None
        assert item["id"] == event["eventId"]
        assert item["type"] == "health-information.submitted"
        assert (item["kitId"], item["version"]) == (kit_id, event["version"])
        assert (item["state"], item["attempts"], item["lastStatus"]) == ("delivered", 1, 200)
        assert item["deliveredAt"] is not None
        assert item["nextAttemptAt"] is None


async def test_the_forwarded_body_names_the_questionnaire_version_the_kit_is_bound_to(
    database: str, tmp_path: Path, lab: Lab, kit_id: str
) -> None:
    questionnaire_id = f"screening-{uuid.uuid4().hex[:8]}"
    async with forwarding_app(database, tmp_path, lab) as (app, client):
        for version in ("1", "2"):  # 2 is the newest, and the kit is bound to 1
            body = {
                "id": questionnaire_id,
                "version": version,
                "title": "Screening",
                "items": [
                    {
                        "id": "smoker",
                        "text": "Smoker?",
                        "type": "boolean",
                        "required": True,
                        "section": "s",
                    }
                ],
            }
            published = await client.post("/v1/questionnaires", json=body, headers=ADMIN)
            assert published.status_code == 201, published.text
        claim = {"questionnaire": {"id": questionnaire_id, "version": "1"}}
        claimed = await client.post(f"/v1/kits/{kit_id}/claim", json=claim, headers=auth("u"))
        assert claimed.status_code == 201, claimed.text
        saved = await client.put(
            f"/v1/kits/{kit_id}/health-information",
            json={"answers": {"smoker": False}, "submitted": True},
            headers=auth("u"),
        )
        assert saved.status_code == 201, saved.text
        await lab.wait_for(lambda: len(lab.accepted) == 1, within=5)

        bound = {"id": questionnaire_id, "version": "1"}
        assert lab.requests[0].event["healthInformation"]["questionnaire"] == bound
        [row] = await outbox_rows(app)
        frozen = json.loads(await stored_payload(app, row))
        assert frozen["healthInformation"]["questionnaire"] == bound


async def test_the_event_commits_with_the_submission_and_only_with_it(
    database: str, tmp_path: Path, lab: Lab, kit_id: str
) -> None:
    # No relay in this process: the rows stay pending for inspection.
    async with forwarding_app(database, tmp_path, lab, forward_in_process=False) as (app, client):
        svc = services_of(app)
        path = f"/v1/kits/{kit_id}/health-information"
        saved = await client.put(
            path, json={"answers": {"heightCm": 170}}, headers=auth("lab-user")
        )
        assert saved.status_code == 201
        refused = await client.post(f"{path}/submit", headers=auth("lab-user"))
        assert refused.status_code == 422
        completed = await client.put(path, json={"answers": COMPLETE}, headers=auth("lab-user"))
        assert completed.status_code == 200
        assert await outbox_rows(app) == []  # saves and refused submissions forward nothing

        ctx = RequestContext(actor=Actor("lab-user"), channel=Channel.REST)

        async def submit_then_crash() -> None:
            async with svc.uows.write() as uow:
                await svc.health_information.submit(uow, ctx, kit_id)
                count = await uow.session.scalar(select(func.count()).select_from(OUTBOX))
                assert count == 1  # recorded inside the submission's transaction …
                raise RuntimeError("crash before the commit")

        with pytest.raises(RuntimeError, match="crash before the commit"):
            await submit_then_crash()
        assert await outbox_rows(app) == []  # … and rolled back with it
        assert (await client.get(path, headers=auth("lab-user"))).json()["status"] == "in-progress"

        response = await client.post(f"{path}/submit", headers=auth("lab-user"))
        assert response.status_code == 200
        [row] = await outbox_rows(app)
        assert (row.state, row.attempts, row.kit_sequence) == ("pending", 0, 1)
        assert (row.event_type, row.kit_id) == (SUBMITTED, kit_id)
        assert row.version == response.json()["version"] == 3
        assert row.payload.startswith("enc1:")  # the payload holds answers: encrypted at rest
        payload = json.loads(await stored_payload(app, row))
        assert payload["eventId"] == row.event_id
        assert payload["healthInformation"] == response.json()
        assert lab.requests == []


async def stored_payload(app: Any, row: Any) -> str:
    """The request body exactly as stored (decrypted with the kit's key)."""
    return await payload_codec(services_of(app).keystore).decode(row.kit_id, row.payload)


async def test_failures_are_retried_with_the_same_key_and_bytes_until_the_lab_accepts(
    database: str, tmp_path: Path, lab: Lab, kit_id: str
) -> None:
    script = [Respond(503), Drop(), Respond(429), Respond(408), Hang(1.0), Respond(500)]
    lab.policy = lambda r: script[r.seen_before] if r.seen_before < len(script) else Respond(200)
    async with forwarding_app(database, tmp_path, lab) as (app, client):
        await submit(client, kit_id)
        await lab.wait_for(lambda: len(lab.accepted) == 1)
        await eventually(all_in("delivered", app, 1))

        [row] = await outbox_rows(app)
        assert (row.attempts, row.last_status, row.last_error) == (7, 200, None)
        assert len(lab.requests) == 7
        assert {r.idempotency_key for r in lab.requests} == {row.event_id}
        assert {r.body for r in lab.requests} == {(await stored_payload(app, row)).encode()}
        assert all(r.signature_valid for r in lab.requests)

        assert await metric(client, "healthinfo_forwarding_deliveries_total", outcome="retry") == 6
        assert (
            await metric(client, "healthinfo_forwarding_deliveries_total", outcome="delivered") == 1
        )
        assert await metric(client, "healthinfo_forwarding_attempt_duration_seconds_count") == 7
        relay = services_of(app).forwarding.relay
        assert relay is not None
        await relay.refresh_backlog()
        assert await metric(client, "healthinfo_forwarding_pending_events") == 0
        assert await metric(client, "healthinfo_forwarding_oldest_pending_age_seconds") == 0


async def test_refused_connections_are_retried_until_the_lab_is_back(
    database: str, tmp_path: Path, lab: Lab, kit_id: str
) -> None:
    async with forwarding_app(database, tmp_path, lab) as (app, client):
        await lab.close()

        async def retried_three_times() -> bool:
            rows = await outbox_rows(app)
            return bool(rows) and rows[0].attempts >= 3

        await submit(client, kit_id)
        await eventually(retried_three_times)
        [row] = await outbox_rows(app)
        assert row.state == "pending"
        assert row.last_status is None
        assert "ConnectError" in row.last_error
        relay = services_of(app).forwarding.relay
        assert relay is not None
        await relay.refresh_backlog()
        assert await metric(client, "healthinfo_forwarding_pending_events") == 1
        assert await metric(client, "healthinfo_forwarding_oldest_pending_age_seconds") > 0

        await lab.start()  # the same port again
        await lab.wait_for(lambda: len(lab.accepted) == 1)
        await eventually(all_in("delivered", app, 1))


async def test_retries_end_with_a_dead_letter_after_the_retry_period(
    database: str, tmp_path: Path, lab: Lab, kit_id: str
) -> None:
    lab.policy = lambda _r: Respond(503)
    overrides = {"forward_give_up_after_seconds": 0.4}
    async with forwarding_app(database, tmp_path, lab, **overrides) as (app, client):
        await submit(client, kit_id)
        await eventually(all_in("dead", app, 1))
        [row] = await outbox_rows(app)
        assert row.attempts >= 3
        assert (row.last_status, row.last_error) == (503, "HTTP 503")
        assert row.dead_at >= row.first_attempt_at + timedelta(seconds=0.4)
        await asyncio.sleep(0.3)  # several polls: a dead letter is not tried again
        assert len(lab.requests) == row.attempts


async def test_a_permanent_refusal_is_dead_lettered_at_once_and_an_admin_retry_delivers_it(
    database: str, tmp_path: Path, lab: Lab, kit_id: str
) -> None:
    lab.policy = lambda r: Respond(422) if r.seen_before == 0 else Respond(200)
    kits = [f"{kit_id}-{i}" for i in range(3)]
    async with forwarding_app(database, tmp_path, lab) as (app, client):
        for kit in kits:
            await submit(client, kit)
        await eventually(all_in("dead", app, 3))
        rows = await outbox_rows(app)
        assert {(r.attempts, r.last_status, r.last_error) for r in rows} == {(1, 422, "HTTP 422")}

        url = "/v1/admin/deliveries"
        first = await client.get(url, params={"state": "dead", "limit": 2}, headers=ADMIN)
        assert first.status_code == 200, first.text
        cursor = first.json()["nextCursor"]
        assert cursor is not None
        second = await client.get(
            url, params={"state": "dead", "limit": 2, "cursor": cursor}, headers=ADMIN
        )
        assert second.json()["nextCursor"] is None
        items = first.json()["items"] + second.json()["items"]
        assert [i["id"] for i in items] == [r.event_id for r in reversed(rows)]  # newest first
        assert all(i["state"] == "dead" and i["deadAt"] and i["lastStatus"] == 422 for i in items)
        pending = await client.get(url, params={"state": "pending"}, headers=ADMIN)
        assert pending.json() == {"items": [], "nextCursor": None}

        assert_problem(await client.get(url), 401, "unauthenticated")
        assert_problem(await client.get(url, headers=auth("ops-user")), 403, "forbidden")
        assert_problem(await client.get(url, headers=auth("aud", "auditor")), 403, "forbidden")
        bad_state = await client.get(url, params={"state": "lost"}, headers=ADMIN)
        assert_problem(bad_state, 422, "validation-failed")
        legacy = await client.get("/admin/deliveries", params={"state": "dead"}, headers=ADMIN)
        assert legacy.status_code == 200
        assert legacy.headers["deprecation"] == DEPRECATION
        assert legacy.json()["items"] == items

        target = rows[0].event_id
        retry = f"{url}/{target}/retry"
        assert_problem(
            await client.post(f"{url}/{uuid.uuid4()}/retry", headers=ADMIN), 404, "not-found"
        )
        assert_problem(await client.post(retry), 401, "unauthenticated")
        assert_problem(await client.post(retry, headers=auth("ops-user")), 403, "forbidden")

        retried = await client.post(retry, headers=ADMIN)
        assert retried.status_code == 202, retried.text
        assert retried.json()["id"] == target
        assert (retried.json()["state"], retried.json()["attempts"]) == ("pending", 0)
        await lab.wait_for(lambda: target in lab.accepted_ids())
        await eventually(lambda: _state_is(app, target, "delivered"))
        conflict = assert_problem(await client.post(retry, headers=ADMIN), 409, "delivery-not-dead")
        assert conflict["state"] == "delivered"
        assert (await states(app))[rows[1].event_id] == "dead"  # the others stay dead

        audit = await client.get(f"/v1/kits/{kits[0]}/audit-events", headers=ADMIN)
        actions = [(e["action"], e["actor"]) for e in audit.json()["items"]]
        assert ("delivery.retry", "ops-admin") in actions
        relay = services_of(app).forwarding.relay
        assert relay is not None
        await relay.refresh_backlog()
        assert await metric(client, "healthinfo_forwarding_dead_events") == 2
        assert await metric(client, "healthinfo_forwarding_deliveries_total", outcome="dead") == 3


async def test_an_admin_retry_replays_under_its_idempotency_key_and_refusals_are_audited(
    database: str, tmp_path: Path, lab: Lab, kit_id: str
) -> None:
    """The admin retry is a POST like the others: Idempotency-Key, and audited when refused."""
    lab.policy = lambda r: Respond(422) if r.seen_before == 0 else Respond(200)
    async with forwarding_app(database, tmp_path, lab) as (app, client):
        await submit(client, kit_id)
        await eventually(all_in("dead", app, 1))
        [row] = await outbox_rows(app)
        retry = f"/v1/admin/deliveries/{row.event_id}/retry"
        keyed = {**ADMIN, "Idempotency-Key": f"retry-{row.event_id}"}

        first = await client.post(retry, headers=keyed)
        assert first.status_code == 202, first.text
        await eventually(lambda: _state_is(app, row.event_id, "delivered"))
        again = await client.post(retry, headers=keyed)  # e.g. the answer was lost: no 409
        assert (again.status_code, again.json()) == (202, first.json())
        assert again.headers["idempotent-replayed"] == "true"

        refused = await client.post(retry, headers=ADMIN)  # no key: it is delivered now
        assert_problem(refused, 409, "delivery-not-dead")
        audit = await client.get(f"/v1/kits/{kit_id}/audit-events", headers=ADMIN)
        outcomes = [e["outcome"] for e in audit.json()["items"] if e["action"] == "delivery.retry"]
        assert outcomes == ["refused:delivery-not-dead", "ok"]  # newest first


async def _state_is(app: FastAPI, event_id: str, state: str) -> bool:
    return (await states(app)).get(event_id) == state


async def test_a_kits_events_go_out_in_order_and_wait_behind_a_dead_letter(
    database: str, tmp_path: Path, lab: Lab, kit_id: str
) -> None:
    """A kit's later events are recorded through the outbox's own API, as amendments will be:
    a kit cannot be submitted twice (submitted data is immutable) and amendments do not exist
    yet. Version 2 of one kit fails twice, then is refused for good (dead); its later
    versions must wait, while another kit's events flow."""
    held, free = f"{kit_id}-held", f"{kit_id}-free"

    def policy(request: Request) -> Respond:
        event = request.event
        if (event["kitId"], event["version"]) == (held, 2) and request.seen_before < 3:
            return Respond(503 if request.seen_before < 2 else 400)
        return Respond(200, delay=0.005)

    lab.policy = policy
    async with forwarding_app(database, tmp_path, lab) as (app, client):
        svc = services_of(app)
        for kit in (held, free):  # the kits exist (the outbox refers to them)
            saved = await client.put(
                f"/v1/kits/{kit}/health-information",
                json={"answers": {"heightCm": 170}},
                headers=auth("lab-user"),
            )
            assert saved.status_code == 201
        for version in range(1, 6):
            for kit in (held, free):
                async with svc.uows.write() as uow:
                    await svc.forwarding.outbox.record(
                        uow,
                        event_type=SUBMITTED if version == 1 else AMENDED,
                        kit_id=kit,
                        version=version,
                        occurred_at=utc_now(),
                        representation={"kitId": kit, "version": version},
                    )

        async def settled() -> bool:
            rows = {(r.kit_id, r.version): r.state for r in await outbox_rows(app)}
            free_done = all(rows.get((free, v)) == "delivered" for v in range(1, 6))
            return free_done and rows.get((held, 2)) == "dead"

        await eventually(settled)
        await asyncio.sleep(0.3)  # several polls: nothing behind the dead letter goes out
        sent_for_held = sorted(
            {r.event["version"] for r in lab.requests if r.event["kitId"] == held}
        )
        assert sent_for_held == [1, 2]
        rows = await outbox_rows(app)
        waiting = [r for r in rows if r.kit_id == held and r.version > 2]
        assert {(r.state, r.attempts) for r in waiting} == {("pending", 0)}
        assert held_back(rows) == {r.event_id for r in waiting}

        dead = next(r for r in rows if (r.kit_id, r.version) == (held, 2))
        retried = await client.post(f"/v1/admin/deliveries/{dead.event_id}/retry", headers=ADMIN)
        assert retried.status_code == 202
        await eventually(all_in("delivered", app, 10))

        rows = await outbox_rows(app)
        assert_delivered_once_each_in_kit_order(
            lab, [(r.event_id, r.kit_id, r.kit_sequence) for r in rows]
        )
        for kit in (held, free):
            versions = [r.event["version"] for r in lab.accepted if r.event["kitId"] == kit]
            assert versions == [1, 2, 3, 4, 5]


async def test_amendments_follow_their_submission_in_order_each_with_its_own_answers(
    database: str, tmp_path: Path, lab: Lab, kit_id: str
) -> None:
    """Through the real API: the submission's delivery fails at first, so the two amendments
    recorded meanwhile must wait; each event still carries the answers of its own version."""

    def policy(request: Request) -> Respond:
        failing = request.event["type"] == SUBMITTED and request.seen_before < 3
        return Respond(503 if failing else 200)

    lab.policy = policy
    async with forwarding_app(database, tmp_path, lab) as (app, client):
        submitted = await submit(client, kit_id)
        amended = []
        for height in (171, 172):
            response = await client.post(
                f"/v1/kits/{kit_id}/health-information/amendments",
                json={"answers": {"heightCm": height}, "reason": "typo in the height"},
                headers=ADMIN,
            )
            assert response.status_code == 200, response.text
            amended.append(response.json())
        await eventually(all_in("delivered", app, 3))

        version = submitted["version"]
        events = [r.event for r in lab.accepted]
        assert [(e["type"], e["version"]) for e in events] == [
            (SUBMITTED, version),
            (AMENDED, version + 1),
            (AMENDED, version + 2),
        ]
        assert [e["healthInformation"] for e in events] == [submitted, *amended]
        assert events[0]["healthInformation"]["answers"]["heightCm"] == COMPLETE["heightCm"]
        rows = await outbox_rows(app)
        assert [r.kit_sequence for r in rows] == [1, 2, 3]
        assert_delivered_once_each_in_kit_order(
            lab, [(r.event_id, r.kit_id, r.kit_sequence) for r in rows]
        )


async def test_erasing_a_kit_deletes_its_events_so_nothing_more_is_sent(
    database: str, tmp_path: Path, lab: Lab, kit_id: str
) -> None:
    """The payload holds answers: an erasure takes the kit's events along, sent or not."""
    sent, waiting = f"{kit_id}-sent", f"{kit_id}-waiting"
    async with forwarding_app(database, tmp_path, lab) as (app, client):
        await submit(client, sent)
        await eventually(all_in("delivered", app, 1))
        await lab.close()

        async def attempted() -> bool:
            return any(r.kit_id == waiting and r.attempts > 0 for r in await outbox_rows(app))

        await submit(client, waiting)
        await eventually(attempted)
        for kit in (sent, waiting):
            erased = await client.delete(
                f"/v1/kits/{kit}/health-information", headers=auth("lab-user")
            )
            assert erased.status_code == 204, erased.text
        assert await outbox_rows(app) == []

        await lab.start()
        await asyncio.sleep(0.3)  # several polls and retry periods
        assert [r.event["kitId"] for r in lab.requests] == [sent]


async def test_an_unreadable_payload_is_dead_lettered_and_other_kits_still_flow(
    database: str, tmp_path: Path, lab: Lab, kit_id: str
) -> None:
    """A payload whose kit key is lost cannot be sent; it must not block anyone else."""
    lost, fine = f"{kit_id}-lost", f"{kit_id}-fine"
    async with forwarding_app(database, tmp_path, lab, forward_in_process=False) as (app, client):
        svc = services_of(app)
        for kit in (lost, fine):
            await submit(client, kit)
        assert await svc.keystore.destroy(lost)  # the key is gone, the event row is not
        relay = another_relay(app, "test-relay")
        await relay.start()
        try:
            await lab.wait_for(lambda: len(lab.accepted) == 1, within=5)
            await eventually(lambda: _states_by_kit(app, {lost: "dead", fine: "delivered"}))
        finally:
            await relay.stop()
        [dead] = [row for row in await outbox_rows(app) if row.kit_id == lost]
        assert dead.last_error == "payload unreadable (KeyDestroyed)"
        assert dead.attempts == 0  # never sent
        assert [request.event["kitId"] for request in lab.requests] == [fine]


def another_relay(app: FastAPI, name: str) -> Any:
    """A relay of its own beside the app's (as a second process's would be)."""
    svc = services_of(app)
    return build_relay(
        svc.settings,
        uows=svc.uows,
        store=svc.forwarding.store,
        registry=CollectorRegistry(),
        wakeups=svc.forwarding.outbox.wakeups,
        name=name,
    )


async def _states_by_kit(app: FastAPI, expected: dict[str, str]) -> bool:
    return {row.kit_id: row.state for row in await outbox_rows(app)} == expected


async def test_many_submissions_under_random_failures_reach_the_lab_once_each_in_kit_order(
    database: str, tmp_path: Path, lab: Lab, kit_id: str
) -> None:
    """Two relays share the outbox (on PostgreSQL they claim with SKIP LOCKED) while the lab
    fails at random; a few kits are refused for good once (dead letters, retried by an admin),
    and a few kits carry several events each."""
    submissions = 1000 if FULL else 200
    ordered_kits, events_per_kit = 10, 4
    rng = random.Random(20261126)

    # Refused kits get a 400 on every request until the admin retries them: under load a
    # response can arrive after the client's timeout (a retry), so "the first request only"
    # would not reliably produce a dead letter.
    refusing = {"on": True}

    def policy(request: Request) -> Respond | Drop | Hang:
        if refusing["on"] and request.event["kitId"].endswith("-refused"):
            return Respond(400)
        roll = rng.random()
        for limit, action in CHAOS:
            if roll < limit:
                return action
        return Respond(200)

    lab.policy = policy
    kits = [f"{kit_id}-{i}" + ("-refused" if i % 50 == 7 else "") for i in range(submissions)]
    async with forwarding_app(database, tmp_path, lab) as (app, client):
        svc = services_of(app)
        second = another_relay(app, "second-relay")
        await second.start()
        try:
            gate = asyncio.Semaphore(16)

            async def submit_one(kit: str) -> None:
                async with gate:
                    await submit(client, kit)

            async def several_events(kit: str) -> None:
                async with gate:
                    saved = await client.put(
                        f"/v1/kits/{kit}/health-information",
                        json={"answers": {"heightCm": 170}},
                        headers=auth("lab-user"),
                    )
                    assert saved.status_code == 201
                for version in range(1, events_per_kit + 1):
                    async with svc.uows.write() as uow:
                        await svc.forwarding.outbox.record(
                            uow,
                            event_type=SUBMITTED if version == 1 else AMENDED,
                            kit_id=kit,
                            version=version,
                            occurred_at=utc_now(),
                            representation={"kitId": kit, "version": version},
                        )
                    await asyncio.sleep(rng.random() * 0.02)

            await asyncio.gather(
                *(submit_one(kit) for kit in kits),
                *(several_events(f"{kit_id}-ordered-{i}") for i in range(ordered_kits)),
            )
            total = submissions + ordered_kits * events_per_kit

            async def settled() -> bool:
                rows = await outbox_rows(app)
                moving = [r for r in rows if r.state == "pending"]
                return len(rows) == total and {r.event_id for r in moving} <= held_back(rows)

            await eventually(settled, within=60, interval=0.1)
            dead_ids = await _all_dead_through_the_admin_route(client)
            refused = {r.event_id for r in await outbox_rows(app) if r.kit_id.endswith("-refused")}
            assert set(dead_ids) == refused
            assert len(refused) == len([k for k in kits if k.endswith("-refused")])
            refusing["on"] = False
            for event_id in dead_ids:
                response = await client.post(
                    f"/v1/admin/deliveries/{event_id}/retry", headers=ADMIN
                )
                assert response.status_code == 202, response.text
            await eventually(all_in("delivered", app, total), within=60, interval=0.1)
        finally:
            await second.stop()

        rows = await outbox_rows(app)
        assert_delivered_once_each_in_kit_order(
            lab, [(r.event_id, r.kit_id, r.kit_sequence) for r in rows]
        )
        assert len(lab.accepted_ids()) == total
        assert len(lab.requests) > total  # the failures did happen, and were retried


CHAOS = [
    (0.15, Respond(503)),
    (0.20, Respond(500)),
    (0.24, Respond(429)),
    (0.27, Respond(408)),
    (0.31, Drop()),
    (0.33, Hang(0.5)),
]


async def _all_dead_through_the_admin_route(client: httpx.AsyncClient) -> list[str]:
    found: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"state": "dead", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = await client.get("/v1/admin/deliveries", params=params, headers=ADMIN)
        assert page.status_code == 200, page.text
        found += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["nextCursor"]
        if cursor is None:
            return found
