"""The audit trail over REST: every write and every refused write leaves one event, no values.

Events are read back through ``GET /v1/kits/{kitId}/audit-events`` as an auditor, except in the
privacy test, which reads the ``audit_events`` table itself so that a value leaking into a
column the API does not show would still be caught.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.answers import COMPLETE
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio

SAVE = "health-information.save"
SUBMIT = "health-information.submit"
CLAIM = "kit.claim"
MEMBER_PUT = "kit.member.put"
MEMBER_DELETE = "kit.member.delete"
CLIENT_ADDRESS = "203.0.113.7"  # what the test client's transport reports (conftest)
CONTRACT_FIELDS = {
    "id",
    "at",
    "actor",
    "action",
    "channel",
    "requestId",
    "versionBefore",
    "versionAfter",
    "changed",
    "outcome",
}

# Distinctive answer values for the privacy test: none may reach the audit trail.
MARKER_ANSWERS: dict[str, Any] = {
    "additionalNotes": "MARKER-7f3a secret note",
    "medications": "MARKER-med-91c2 warfarin 5mg",
    "otherConditions": "MARKER-cond-5e1d",
    "genderIdentity": "MARKER-gi-0b7e",
    "heightCm": 271,
    "weightKg": 97.31,
    "dateOfBirth": "1911-11-11",
    "conditions": ["kidney-disease"],
}
# Substrings that cannot occur by chance in ids, timestamps or request metadata.
MARKER_STRINGS = ("MARKER-", "secret note", "warfarin", "97.31", "1911-11-11", "kidney-disease")
STANDALONE_271 = re.compile(r"(?<![0-9A-Za-z.])271(?![0-9A-Za-z.])")


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


def new_user(role: str = "user") -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex}"


def headers(user: str, *roles: str, request_id: str | None = None, **extra: str) -> dict[str, str]:
    sent = {**auth(user, *roles), **extra}
    if request_id is not None:
        sent["X-Request-ID"] = request_id
    return sent


async def put(
    client: httpx.AsyncClient,
    kit_id: str,
    user: str,
    answers: dict[str, Any],
    *,
    request_id: str | None = None,
    submitted: bool = False,
    if_match: str | None = None,
) -> httpx.Response:
    sent = headers(user, request_id=request_id)
    if if_match is not None:
        sent["If-Match"] = if_match
    body = {"answers": answers, "submitted": submitted}
    return await client.put(url(kit_id), json=body, headers=sent)


async def patch(
    client: httpx.AsyncClient,
    kit_id: str,
    user: str,
    answers: dict[str, Any],
    *,
    request_id: str | None = None,
    if_match: str | None = None,
) -> httpx.Response:
    sent = headers(user, request_id=request_id, **{"Content-Type": "application/merge-patch+json"})
    if if_match is not None:
        sent["If-Match"] = if_match
    return await client.patch(url(kit_id), content=json.dumps({"answers": answers}), headers=sent)


async def submit(
    client: httpx.AsyncClient, kit_id: str, user: str, *, request_id: str | None = None
) -> httpx.Response:
    return await client.post(url(kit_id, "/submit"), headers=headers(user, request_id=request_id))


async def put_member(
    client: httpx.AsyncClient,
    kit_id: str,
    by: str,
    member: str,
    role: str,
    *,
    request_id: str | None = None,
) -> httpx.Response:
    return await client.put(
        f"/v1/kits/{kit_id}/members/{member}",
        json={"role": role},
        headers=headers(by, request_id=request_id),
    )


async def audit_page(client: httpx.AsyncClient, kit_id: str, query: str = "") -> dict[str, Any]:
    response = await client.get(
        f"/v1/kits/{kit_id}/audit-events{query}", headers=auth(new_user("auditor"), "auditor")
    )
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def events(client: httpx.AsyncClient, kit_id: str) -> list[dict[str, Any]]:
    page = await audit_page(client, kit_id, "?limit=500")
    assert page["nextCursor"] is None
    items: list[dict[str, Any]] = page["items"]
    return items


async def latest(client: httpx.AsyncClient, kit_id: str) -> dict[str, Any]:
    return (await events(client, kit_id))[0]


def event(
    action: str,
    actor: str,
    request_id: str,
    *,
    outcome: str = "ok",
    before: int | None = None,
    after: int | None = None,
    changed: list[str] | None = None,
) -> dict[str, Any]:
    """The fields of an audit event a test can predict (not ``id``, ``at``)."""
    return {
        "actor": actor,
        "action": action,
        "channel": "rest",
        "requestId": request_id,
        "versionBefore": before,
        "versionAfter": after,
        "changed": changed or [],
        "outcome": outcome,
    }


def predictable(item: dict[str, Any]) -> dict[str, Any]:
    return {key: item[key] for key in event("", "", "")}


async def saved_kit(
    client: httpx.AsyncClient, answers: dict[str, Any] | None = None
) -> tuple[str, str]:
    """A kit claimed by a fresh owner with one saved version."""
    kit_id, owner = f"KIT-{uuid.uuid4().hex[:12]}", new_user("owner")
    response = await put(client, kit_id, owner, answers or {"heightCm": 180})
    assert response.status_code == 201, response.text
    return kit_id, owner


async def audit_rows(app: FastAPI) -> list[dict[str, Any]]:
    """Every row of the audit table, read with SQL, not through the API."""
    async with app.state.services.uows.read() as uow:
        result = await uow.session.execute(text("SELECT * FROM audit_events"))
        return [dict(row._mapping) for row in result]


def leaks(value: Any) -> list[str]:
    """The markers found in one stored value, whatever its type."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [repr(value)] if value in (271, 97.31) else []
    shown = value if isinstance(value, str) else json.dumps(value, default=str)
    found = [marker for marker in MARKER_STRINGS if marker in shown]
    return found + (["271"] if STANDALONE_271.search(shown) else [])


# -- every write leaves an event ----------------------------------------------------------


async def test_first_put_audits_the_auto_claim_and_the_save(client: httpx.AsyncClient) -> None:
    kit_id, user, rid = f"KIT-{uuid.uuid4().hex[:12]}", new_user(), new_request_id()
    response = await put(client, kit_id, user, {"weightKg": 70, "heightCm": 180}, request_id=rid)
    assert response.status_code == 201
    assert [predictable(e) for e in await events(client, kit_id)] == [
        event(SAVE, user, rid, after=1, changed=["heightCm", "weightKg"]),
        event(CLAIM, user, rid),
    ]


async def test_put_audits_versions_and_every_changed_question_id(
    client: httpx.AsyncClient,
) -> None:
    kit_id, owner = await saved_kit(client, {"heightCm": 180, "vaping": True})
    rid = new_request_id()
    await put(client, kit_id, owner, {"heightCm": 181, "weightKg": 70}, request_id=rid)
    assert predictable(await latest(client, kit_id)) == event(
        SAVE, owner, rid, before=1, after=2, changed=["heightCm", "vaping", "weightKg"]
    )


async def test_patch_is_audited_as_a_save(client: httpx.AsyncClient) -> None:
    kit_id, owner = await saved_kit(client)
    rid = new_request_id()
    response = await patch(client, kit_id, owner, {"smokingStatus": "never"}, request_id=rid)
    assert response.status_code == 200
    assert predictable(await latest(client, kit_id)) == event(
        SAVE, owner, rid, before=1, after=2, changed=["smokingStatus"]
    )


async def test_submit_is_audited(client: httpx.AsyncClient) -> None:
    kit_id, owner = await saved_kit(client, COMPLETE)
    rid = new_request_id()
    response = await submit(client, kit_id, owner, request_id=rid)
    assert response.status_code == 200
    assert predictable(await latest(client, kit_id)) == event(SUBMIT, owner, rid, before=1, after=2)


async def test_put_with_submitted_true_is_audited_as_a_submit(client: httpx.AsyncClient) -> None:
    kit_id, owner = await saved_kit(client)
    rid = new_request_id()
    response = await put(client, kit_id, owner, COMPLETE, request_id=rid, submitted=True)
    assert response.status_code == 200
    assert predictable(await latest(client, kit_id)) == event(
        SUBMIT, owner, rid, before=1, after=2, changed=sorted(COMPLETE)
    )


async def test_explicit_claim_is_audited(client: httpx.AsyncClient) -> None:
    kit_id, user, rid = f"KIT-{uuid.uuid4().hex[:12]}", new_user(), new_request_id()
    response = await client.post(f"/v1/kits/{kit_id}/claim", headers=headers(user, request_id=rid))
    assert response.status_code == 201
    assert [predictable(e) for e in await events(client, kit_id)] == [event(CLAIM, user, rid)]


async def test_member_put_is_audited_with_the_member_id(client: httpx.AsyncClient) -> None:
    kit_id, owner = await saved_kit(client)
    member, rid = new_user("member"), new_request_id()
    response = await put_member(client, kit_id, owner, member, "editor", request_id=rid)
    assert response.status_code == 201
    assert predictable(await latest(client, kit_id)) == event(
        MEMBER_PUT, owner, rid, changed=[member]
    )


async def test_member_role_change_is_audited(client: httpx.AsyncClient) -> None:
    kit_id, owner = await saved_kit(client)
    member, rid = new_user("member"), new_request_id()
    await put_member(client, kit_id, owner, member, "editor")
    response = await put_member(client, kit_id, owner, member, "viewer", request_id=rid)
    assert response.status_code == 200
    assert predictable(await latest(client, kit_id)) == event(
        MEMBER_PUT, owner, rid, changed=[member]
    )


async def test_member_delete_is_audited_with_the_member_id(client: httpx.AsyncClient) -> None:
    kit_id, owner = await saved_kit(client)
    member, rid = new_user("member"), new_request_id()
    await put_member(client, kit_id, owner, member, "viewer")
    response = await client.delete(
        f"/v1/kits/{kit_id}/members/{member}", headers=headers(owner, request_id=rid)
    )
    assert response.status_code == 204
    assert predictable(await latest(client, kit_id)) == event(
        MEMBER_DELETE, owner, rid, changed=[member]
    )


async def test_admin_write_is_audited_with_the_admin_as_actor(client: httpx.AsyncClient) -> None:
    kit_id, _owner = await saved_kit(client)
    admin, rid = new_user("admin"), new_request_id()
    response = await client.patch(
        url(kit_id),
        json={"answers": {"heightCm": 150}},
        headers=headers(admin, "admin", request_id=rid),
    )
    assert response.status_code == 200
    assert predictable(await latest(client, kit_id)) == event(
        SAVE, admin, rid, before=1, after=2, changed=["heightCm"]
    )


# -- writes that change nothing, and refusals ---------------------------------------------


@pytest.mark.parametrize("method", ["put", "patch"])
async def test_write_that_changes_nothing_is_audited_as_unchanged(
    client: httpx.AsyncClient, method: str
) -> None:
    kit_id, owner = await saved_kit(client, {"heightCm": 180})
    rid = new_request_id()
    write = put if method == "put" else patch
    response = await write(client, kit_id, owner, {"heightCm": 180}, request_id=rid)
    assert response.status_code == 200
    assert predictable(await latest(client, kit_id)) == event(
        SAVE, owner, rid, outcome="unchanged", before=1, after=1
    )


async def test_viewer_write_is_audited_as_refused_forbidden(client: httpx.AsyncClient) -> None:
    kit_id, owner = await saved_kit(client)
    viewer, rid = new_user("viewer"), new_request_id()
    await put_member(client, kit_id, owner, viewer, "viewer")
    response = await put(client, kit_id, viewer, {"heightCm": 150}, request_id=rid)
    assert response.status_code == 403
    assert predictable(await latest(client, kit_id)) == event(
        SAVE, viewer, rid, outcome="refused:forbidden"
    )


async def test_stranger_write_is_audited_as_refused_not_found(client: httpx.AsyncClient) -> None:
    kit_id, _owner = await saved_kit(client)
    stranger, rid = new_user("stranger"), new_request_id()
    response = await patch(client, kit_id, stranger, {"heightCm": 150}, request_id=rid)
    assert response.status_code == 404
    assert predictable(await latest(client, kit_id)) == event(
        SAVE, stranger, rid, outcome="refused:not-found"
    )


@pytest.mark.parametrize(
    ("attempt", "action"),
    [("put", SAVE), ("patch", SAVE), ("put-submit", SUBMIT), ("submit", SUBMIT)],
)
async def test_write_on_submitted_data_is_audited_as_refused_already_submitted(
    client: httpx.AsyncClient, attempt: str, action: str
) -> None:
    kit_id, owner = await saved_kit(client, COMPLETE)
    assert (await submit(client, kit_id, owner)).status_code == 200
    rid = new_request_id()
    if attempt == "put":
        response = await put(client, kit_id, owner, COMPLETE, request_id=rid)
    elif attempt == "patch":
        response = await patch(client, kit_id, owner, {"heightCm": 150}, request_id=rid)
    elif attempt == "put-submit":
        response = await put(client, kit_id, owner, COMPLETE, request_id=rid, submitted=True)
    else:
        response = await submit(client, kit_id, owner, request_id=rid)
    assert response.status_code == 409
    assert predictable(await latest(client, kit_id)) == event(
        action, owner, rid, outcome="refused:already-submitted"
    )


@pytest.mark.parametrize(
    "answers",
    [{"heightCm": 999}, {"noSuchQuestion": True}, {"smokingStatus": "sometimes"}],
    ids=["out-of-range", "unknown-question", "unknown-option"],
)
async def test_invalid_answers_are_audited_as_refused_validation_failed(
    client: httpx.AsyncClient, answers: dict[str, Any]
) -> None:
    kit_id, owner = await saved_kit(client)
    rid = new_request_id()
    response = await put(client, kit_id, owner, answers, request_id=rid)
    assert response.status_code == 422
    assert predictable(await latest(client, kit_id)) == event(
        SAVE, owner, rid, outcome="refused:validation-failed"
    )


async def test_submit_with_missing_answers_is_audited_as_refused_validation_failed(
    client: httpx.AsyncClient,
) -> None:
    kit_id, owner = await saved_kit(client)
    rid = new_request_id()
    assert (await submit(client, kit_id, owner, request_id=rid)).status_code == 422
    assert predictable(await latest(client, kit_id)) == event(
        SUBMIT, owner, rid, outcome="refused:validation-failed"
    )


async def test_if_match_mismatch_is_audited_as_refused_version_conflict(
    client: httpx.AsyncClient,
) -> None:
    kit_id, owner = await saved_kit(client)
    await patch(client, kit_id, owner, {"weightKg": 70})
    rid = new_request_id()
    response = await patch(client, kit_id, owner, {"heightCm": 150}, request_id=rid, if_match='"1"')
    assert response.status_code == 412
    assert predictable(await latest(client, kit_id)) == event(
        SAVE, owner, rid, outcome="refused:version-conflict"
    )


async def test_claim_of_someone_elses_kit_is_audited_as_refused(
    client: httpx.AsyncClient,
) -> None:
    kit_id, _owner = await saved_kit(client)
    other, rid = new_user("other"), new_request_id()
    response = await client.post(f"/v1/kits/{kit_id}/claim", headers=headers(other, request_id=rid))
    assert response.status_code == 409
    assert predictable(await latest(client, kit_id)) == event(
        CLAIM, other, rid, outcome="refused:kit-already-claimed"
    )


async def test_refused_first_write_leaves_no_claim_event(client: httpx.AsyncClient) -> None:
    kit_id, user, rid = f"KIT-{uuid.uuid4().hex[:12]}", new_user(), new_request_id()
    response = await put(client, kit_id, user, {"heightCm": 999}, request_id=rid)
    assert response.status_code == 422
    assert [predictable(e) for e in await events(client, kit_id)] == [
        event(SAVE, user, rid, outcome="refused:validation-failed")
    ]


async def test_refused_write_adds_an_event_and_nothing_else(client: httpx.AsyncClient) -> None:
    kit_id, owner = await saved_kit(client)
    viewer = new_user("viewer")
    await put_member(client, kit_id, owner, viewer, "viewer")
    before = await events(client, kit_id)
    await put(client, kit_id, viewer, {"heightCm": 150})
    after = await events(client, kit_id)
    assert len(after) == len(before) + 1
    assert after[1:] == before


# -- shape, order, paging, request metadata -----------------------------------------------


async def test_event_carries_every_contract_field(client: httpx.AsyncClient) -> None:
    kit_id, _owner = await saved_kit(client)
    item = await latest(client, kit_id)
    assert set(item) >= CONTRACT_FIELDS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", item["at"])
    assert item["id"]


async def test_request_id_is_the_one_the_server_answered_with_when_none_was_sent(
    client: httpx.AsyncClient,
) -> None:
    kit_id, owner = await saved_kit(client)
    response = await patch(client, kit_id, owner, {"weightKg": 70})
    assert response.status_code == 200
    assert (await latest(client, kit_id))["requestId"] == response.headers["x-request-id"]


async def test_client_address_and_user_agent_are_recorded(client: httpx.AsyncClient) -> None:
    kit_id, owner = await saved_kit(client)
    await client.patch(
        url(kit_id),
        json={"answers": {"weightKg": 70}},
        headers=headers(owner, **{"User-Agent": "AuditTestApp/2.1 (kit-tests)"}),
    )
    item = await latest(client, kit_id)
    assert item["clientAddress"] == CLIENT_ADDRESS
    assert item["userAgent"] == "AuditTestApp/2.1 (kit-tests)"


async def test_long_user_agent_is_recorded_cut_to_255_characters(
    client: httpx.AsyncClient,
) -> None:
    kit_id, owner = await saved_kit(client)
    agent = "A" * 300
    response = await client.patch(
        url(kit_id),
        json={"answers": {"weightKg": 70}},
        headers=headers(owner, **{"User-Agent": agent}),
    )
    assert response.status_code == 200
    assert (await latest(client, kit_id))["userAgent"] == agent[:255]


async def test_events_are_newest_first(client: httpx.AsyncClient) -> None:
    kit_id, owner = await saved_kit(client)
    await patch(client, kit_id, owner, {"weightKg": 70})
    await patch(client, kit_id, owner, {"weightKg": 71})
    items = await events(client, kit_id)
    assert [(e["action"], e["versionAfter"]) for e in items] == [
        (SAVE, 3),
        (SAVE, 2),
        (SAVE, 1),
        (CLAIM, None),
    ]
    times = [e["at"] for e in items]
    assert times == sorted(times, reverse=True)


async def test_events_page_with_limit_and_cursor(client: httpx.AsyncClient) -> None:
    kit_id, owner = await saved_kit(client)
    for weight in (70, 71, 72):
        await patch(client, kit_id, owner, {"weightKg": weight})
    everything = await events(client, kit_id)
    assert len(everything) == 5
    first = await audit_page(client, kit_id, "?limit=2")
    second = await audit_page(client, kit_id, f"?limit=2&cursor={first['nextCursor']}")
    third = await audit_page(client, kit_id, f"?limit=2&cursor={second['nextCursor']}")
    assert first["nextCursor"]
    assert second["nextCursor"]
    assert third["nextCursor"] is None
    pages = [first["items"], second["items"], third["items"]]
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [e["id"] for page in pages for e in page] == [e["id"] for e in everything]


async def test_events_of_one_kit_are_not_listed_for_another(client: httpx.AsyncClient) -> None:
    kit_id, _owner = await saved_kit(client)
    other_kit, _other_owner = await saved_kit(client)
    ours = {e["id"] for e in await events(client, kit_id)}
    theirs = {e["id"] for e in await events(client, other_kit)}
    assert ours
    assert theirs
    assert not ours & theirs


async def test_reads_of_answers_are_audited(client: httpx.AsyncClient) -> None:
    """Disclosing answers is audited (read auditing is on by default); listing metadata is not."""
    kit_id, owner = await saved_kit(client)
    before = await events(client, kit_id)
    await client.get(url(kit_id), headers=auth(owner))
    await client.get(url(kit_id, "/history/1"), headers=auth(owner))
    await client.get(url(kit_id, "/history"), headers=auth(owner))
    await client.get(f"/v1/kits/{kit_id}/members", headers=auth(owner))
    after = await events(client, kit_id)
    new = after[: len(after) - len(before)]
    assert [(e["action"], e["actor"], e["versionAfter"]) for e in new] == [
        ("health-information.read", owner, 1),
        ("health-information.read", owner, 1),
    ]


async def test_a_304_discloses_nothing_and_is_not_audited(client: httpx.AsyncClient) -> None:
    kit_id, owner = await saved_kit(client)
    before = await events(client, kit_id)
    response = await client.get(url(kit_id), headers={**auth(owner), "If-None-Match": '"1"'})
    assert response.status_code == 304
    assert await events(client, kit_id) == before


async def test_reads_leave_no_event_when_read_auditing_is_off(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(audit_reads=False))
    async with app.router.lifespan_context(app), await open_client(app) as other:
        kit_id, owner = await saved_kit(other)
        before = await events(other, kit_id)
        await other.get(url(kit_id), headers=auth(owner))
        await other.get(url(kit_id, "/history/1"), headers=auth(owner))
        assert await events(other, kit_id) == before


# -- privacy ------------------------------------------------------------------------------


async def test_audit_table_and_audit_api_hold_no_answer_values(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    kit_id, owner, viewer = f"KIT-{uuid.uuid4().hex[:12]}", new_user("owner"), new_user("viewer")
    complete_with_markers = {**COMPLETE, **MARKER_ANSWERS}
    statuses = [
        (await put(client, kit_id, owner, MARKER_ANSWERS)).status_code,
        (await put_member(client, kit_id, owner, viewer, "viewer")).status_code,
        (await put(client, kit_id, viewer, MARKER_ANSWERS)).status_code,
        (await put(client, kit_id, owner, {**MARKER_ANSWERS, "heightCm": 999})).status_code,
        (await put(client, kit_id, owner, MARKER_ANSWERS, if_match='"7"')).status_code,
        (await put(client, kit_id, owner, MARKER_ANSWERS)).status_code,
        (await patch(client, kit_id, owner, complete_with_markers)).status_code,
        (await submit(client, kit_id, owner)).status_code,
        (await patch(client, kit_id, owner, MARKER_ANSWERS)).status_code,
    ]
    assert statuses == [201, 201, 403, 422, 412, 200, 200, 200, 409]
    outcomes = {e["outcome"] for e in await events(client, kit_id)}
    assert outcomes == {
        "ok",
        "unchanged",
        "refused:forbidden",
        "refused:validation-failed",
        "refused:version-conflict",
        "refused:already-submitted",
    }

    rows = await audit_rows(app)
    assert len([row for row in rows if row["kit_id"] == kit_id]) == len(statuses) + 1
    found = {
        f"{row['event_id']}.{column}": leaked
        for row in rows
        for column, value in row.items()
        if column != "id"  # the surrogate key counts rows: it may well reach 271
        if (leaked := leaks(value))
    }
    assert not found, f"answer values stored in audit_events: {found}"

    for reader in (auth(new_user("auditor"), "auditor"), auth(new_user("admin"), "admin")):
        response = await client.get(f"/v1/kits/{kit_id}/audit-events", headers=reader)
        assert response.status_code == 200
        assert len(response.json()["items"]) == len(statuses) + 1
        assert not leaks(response.text), f"answer values in the audit API: {leaks(response.text)}"
