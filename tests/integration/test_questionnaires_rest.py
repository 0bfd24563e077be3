"""Questionnaires managed at run time: publication, versions, binding and enforcement."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
import pytest

from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio


def admin() -> dict[str, str]:
    return auth(f"admin-{uuid.uuid4().hex[:6]}", "admin")


def when(question: str, operator: str, answer: Any) -> dict[str, Any]:
    return {"question": question, "operator": operator, "answer": answer}


def question(item_id: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"id": item_id, "text": item_id, "type": kind, "required": False, "section": "s"} | extra


def definition(version: str = "1", **overrides: Any) -> dict[str, Any]:
    """Smoking (a chain of conditions), symptoms (multiple choice) and a repeating group."""
    return {
        "id": f"screening-{uuid.uuid4().hex[:8]}",
        "version": version,
        "title": "Screening",
        "items": [
            {"id": "intro", "type": "display", "text": "A few questions."},
            question("smoker", "boolean", required=True),
            question("perDay", "integer", required=True, enableWhen=[when("smoker", "=", True)]),
            question("triedQuitting", "boolean", enableWhen=[when("perDay", ">", 10)]),
            question(
                "symptoms",
                "multiple-choice",
                options=[{"value": "cough", "label": "Cough"}, {"value": "fever", "label": "F"}],
            ),
            question("feverDays", "integer", enableWhen=[when("symptoms", "=", "fever")]),
            question("notes", "string", enableWhen=[when("smoker", "!=", True)]),
            {
                "id": "medications",
                "text": "Medications",
                "type": "group",
                "section": "s",
                "repeats": True,
                "maxItems": 3,
                "items": [
                    question("name", "string", required=True),
                    question("doseMg", "integer", minimum=1, maximum=1000),
                    question("daily", "boolean"),
                    question("timesPerDay", "integer", enableWhen=[when("daily", "=", True)]),
                ],
            },
        ],
    } | overrides


async def publish(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/questionnaires", json=body, headers=admin())


async def published(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    body = definition(**overrides)
    response = await publish(client, body)
    assert response.status_code == 201, response.text
    return body


def hi_url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


async def bound_kit(
    client: httpx.AsyncClient, kit_id: str, user: str, body: dict[str, Any], answers: dict
) -> httpx.Response:
    ref = {"id": body["id"], "version": body["version"]}
    return await client.put(
        hi_url(kit_id), json={"answers": answers, "questionnaire": ref}, headers=auth(user)
    )


async def patch(
    client: httpx.AsyncClient, kit_id: str, user: str, answers: dict, **extra: Any
) -> httpx.Response:
    headers = {**auth(user), "Content-Type": "application/merge-patch+json"}
    return await client.patch(hi_url(kit_id), json={"answers": answers, **extra}, headers=headers)


def fields(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return [(e["field"], e["message"]) for e in response.json()["errors"]]


# --- publication ----------------------------------------------------------------------------


async def test_publishing_is_201_with_the_location_of_the_version(
    client: httpx.AsyncClient,
) -> None:
    body = definition()
    response = await publish(client, body)
    assert response.status_code == 201
    assert response.headers["location"] == f"/v1/questionnaires/{body['id']}/versions/1"
    assert response.json()["items"][1]["id"] == "smoker"


async def test_publishing_the_same_content_again_is_200(client: httpx.AsyncClient) -> None:
    body = await published(client)
    again = await publish(client, body)
    assert again.status_code == 200
    assert again.json()["id"] == body["id"]


async def test_other_content_under_a_published_version_is_409(client: httpx.AsyncClient) -> None:
    body = await published(client)
    changed = copy.deepcopy(body) | {"title": "Changed"}
    response = await publish(client, changed)
    assert response.status_code == 409
    assert response.json()["code"] == "questionnaire-version-exists"


async def test_only_an_admin_publishes(client: httpx.AsyncClient, user: str) -> None:
    response = await client.post("/v1/questionnaires", json=definition(), headers=auth(user))
    assert response.status_code == 403


async def test_publishing_is_audited(client: httpx.AsyncClient) -> None:
    body = await published(client)
    events = await client.get(
        "/v1/kits/questionnaire-definitions/audit-events", params={"limit": 200}, headers=admin()
    )
    assert events.status_code == 200, events.text
    published_refs = [
        ref
        for event in events.json()["items"]
        if event["action"] == "questionnaire.publish"
        for ref in event["changed"]
    ]
    assert f"{body['id']}|1" in published_refs


async def test_every_definition_error_is_a_field_error_naming_its_path(
    client: httpx.AsyncClient,
) -> None:
    body = definition()
    body["items"][3]["enableWhen"] = [when("nope", "=", True)]
    body["items"][5]["enableWhen"] = [when("symptoms", ">", "fever")]
    body["items"].append(question("smoker", "boolean"))
    response = await publish(client, body)
    assert fields(response) == [("items[8].id", "item 'smoker' is defined twice")]
    del body["items"][8]
    assert fields(await publish(client, body)) == [
        ("items[3].enableWhen[0].question", "names no item of this questionnaire"),
        ("items[5].enableWhen[0].operator", "> does not fit a multiple-choice item"),
    ]


async def test_a_cycle_is_refused_at_publication(client: httpx.AsyncClient) -> None:
    body = definition()
    body["items"][1]["enableWhen"] = [when("triedQuitting", "=", True)]
    errors = fields(await publish(client, body))
    assert [message for _field, message in errors] == ["forms a cycle of conditions"]


async def test_a_condition_answer_that_does_not_fit_the_item_is_refused(
    client: httpx.AsyncClient,
) -> None:
    body = definition()
    body["items"][2]["enableWhen"] = [when("smoker", "=", "yes")]
    assert fields(await publish(client, body)) == [
        ("items[2].enableWhen[0].answer", "is not a possible answer to 'smoker'")
    ]


# --- reading and retiring -------------------------------------------------------------------


async def test_the_newest_active_version_is_served_and_every_version_listed(
    client: httpx.AsyncClient, user: str
) -> None:
    first = await published(client)
    second = await published(client, id=first["id"], version="2", title="Screening 2")
    newest = await client.get(f"/v1/questionnaires/{first['id']}", headers=auth(user))
    assert newest.json()["version"] == "2"
    versions = await client.get(f"/v1/questionnaires/{first['id']}/versions", headers=auth(user))
    assert [(v["version"], v["status"]) for v in versions.json()["items"]] == [
        ("1", "active"),
        ("2", "active"),
    ]
    one = await client.get(f"/v1/questionnaires/{first['id']}/versions/1", headers=auth(user))
    assert one.json()["title"] == first["title"] != second["title"]


async def test_retiring_moves_the_newest_active_version_back(
    client: httpx.AsyncClient, user: str
) -> None:
    first = await published(client)
    await published(client, id=first["id"], version="2")
    retired = await client.post(
        f"/v1/questionnaires/{first['id']}/versions/2/retire", headers=admin()
    )
    assert retired.status_code == 200
    assert retired.json()["status"] == "retired"
    newest = await client.get(f"/v1/questionnaires/{first['id']}", headers=auth(user))
    assert newest.json()["version"] == "1"
    still = await client.get(f"/v1/questionnaires/{first['id']}/versions/2", headers=auth(user))
    assert still.status_code == 200


async def test_the_list_names_each_questionnaire_with_its_latest_version(
    client: httpx.AsyncClient, user: str
) -> None:
    body = await published(client)
    seen: dict[str, Any] = {}
    cursor = None
    while True:
        params = {"limit": 50} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/questionnaires", params=params, headers=auth(user))).json()
        seen |= {item["id"]: item for item in page["items"]}
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen[body["id"]] == {
        "id": body["id"],
        "title": "Screening",
        "latestVersion": "1",
        "status": "active",
    }
    assert seen["health-information"]["latestVersion"] == "1"


# --- binding ----------------------------------------------------------------------------------


async def test_a_kit_is_bound_to_the_shipped_questionnaire_by_default(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await client.put(
        hi_url(kit_id), json={"answers": {"heightCm": 180}}, headers=auth(user)
    )
    assert response.json()["questionnaire"] == {"id": "health-information", "version": "1"}


async def test_the_first_write_binds_the_kit_to_the_named_questionnaire(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    response = await bound_kit(client, kit_id, user, body, {"smoker": False})
    assert response.status_code == 201, response.text
    assert response.json()["questionnaire"] == {"id": body["id"], "version": "1"}


async def test_without_a_version_the_newest_active_one_is_bound(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    await published(client, id=body["id"], version="2")
    response = await client.put(
        hi_url(kit_id),
        json={"answers": {"smoker": False}, "questionnaire": {"id": body["id"]}},
        headers=auth(user),
    )
    assert response.json()["questionnaire"]["version"] == "2"


async def test_a_later_write_naming_another_questionnaire_is_409(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    await bound_kit(client, kit_id, user, body, {"smoker": False})
    response = await patch(
        client, kit_id, user, {"heightCm": 180}, questionnaire={"id": "health-information"}
    )
    assert response.status_code == 409
    assert response.json()["code"] == "questionnaire-mismatch"


async def test_a_retired_version_or_an_unknown_id_is_422(
    client: httpx.AsyncClient, user: str
) -> None:
    body = await published(client)
    await client.post(f"/v1/questionnaires/{body['id']}/versions/1/retire", headers=admin())
    retired = await bound_kit(client, f"KIT-{uuid.uuid4().hex[:10]}", user, body, {})
    assert fields(retired) == [("questionnaire.version", "is retired")]
    unknown = await client.put(
        hi_url(f"KIT-{uuid.uuid4().hex[:10]}"),
        json={"answers": {}, "questionnaire": {"id": "no-such-thing"}},
        headers=auth(user),
    )
    assert fields(unknown) == [
        ("questionnaire.id", "names no questionnaire with an active version")
    ]


async def test_kits_bound_to_a_retired_version_keep_working(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    await bound_kit(client, kit_id, user, body, {"smoker": False})
    await client.post(f"/v1/questionnaires/{body['id']}/versions/1/retire", headers=admin())
    response = await patch(client, kit_id, user, {"symptoms": ["cough"]})
    assert response.status_code == 200, response.text


# --- enforcement ------------------------------------------------------------------------------


async def test_answering_a_disabled_item_is_422_not_enabled(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    response = await bound_kit(client, kit_id, user, body, {"smoker": False, "perDay": 5})
    assert fields(response) == [("answers.perDay", "not enabled")]


async def test_a_condition_on_a_multiple_choice_answer(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    ok = await bound_kit(
        client, kit_id, user, body, {"symptoms": ["cough", "fever"], "feverDays": 2}
    )
    assert ok.status_code == 201, ok.text
    refused = await patch(client, kit_id, user, {"symptoms": ["cough"], "feverDays": 3})
    assert fields(refused) == [("answers.feverDays", "not enabled")]


async def test_not_equals_on_an_unanswered_item_enables_per_fhir(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    response = await bound_kit(client, kit_id, user, body, {"notes": "none"})
    assert response.status_code == 201, response.text
    refused = await patch(client, kit_id, user, {"smoker": True, "perDay": 1, "notes": "x"})
    assert fields(refused) == [("answers.notes", "not enabled")]


async def test_disabling_cascades_through_a_chain_and_removes_answers_in_the_same_version(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    first = await bound_kit(
        client, kit_id, user, body, {"smoker": True, "perDay": 20, "triedQuitting": True}
    )
    assert first.status_code == 201, first.text
    response = await patch(client, kit_id, user, {"smoker": False})
    assert response.status_code == 200, response.text
    assert response.json()["answers"] == {"smoker": False}
    assert response.json()["version"] == 2
    history = await client.get(hi_url(kit_id, "/history"), headers=auth(user))
    assert history.json()["items"][0]["changed"] == ["perDay", "smoker", "triedQuitting"]


async def test_a_condition_inside_a_repetition_refers_to_the_same_row(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    rows = [{"name": "a", "daily": True, "timesPerDay": 2}, {"name": "b", "timesPerDay": 1}]
    response = await bound_kit(client, kit_id, user, body, {"medications": rows})
    assert fields(response) == [("answers.medications[1].timesPerDay", "not enabled")]


async def test_repeating_groups_are_validated_row_by_row(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    rows = [{"name": "a"}, {"name": "b", "doseMg": 5}, {"name": "c", "doseMg": 0}]
    assert fields(await bound_kit(client, kit_id, user, body, {"medications": rows})) == [
        ("answers.medications[2].doseMg", "must be an integer between 1 and 1000")
    ]


async def test_required_on_submit_applies_only_to_enabled_items(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    await bound_kit(client, kit_id, user, body, {"smoker": False})
    submitted = await client.post(hi_url(kit_id, "/submit"), headers=auth(user))
    assert submitted.status_code == 200, submitted.text


async def test_required_on_submit_names_enabled_items_and_rows(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    await bound_kit(client, kit_id, user, body, {"smoker": True, "medications": [{"doseMg": 5}]})
    refused = await client.post(hi_url(kit_id, "/submit"), headers=auth(user))
    assert fields(refused) == [
        ("answers.medications[0].name", "is required to submit"),
        ("answers.perDay", "is required to submit"),
    ]


async def test_a_repeating_group_is_one_field_for_conflicts(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    await bound_kit(client, kit_id, user, body, {"medications": [{"name": "a"}]})
    await patch(client, kit_id, user, {"medications": [{"name": "a"}, {"name": "b"}]})
    stale = await patch(client, kit_id, user, {"medications": [{"name": "c"}]}, baseVersion=1)
    assert stale.status_code == 409
    assert stale.json()["code"] == "edit-conflict"
    assert [c["field"] for c in stale.json()["conflicts"]] == ["medications"]


async def test_two_people_editing_when_one_disables_the_others_question(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    """A answers perDay from version 1 while B turns smoking off from version 1: B's write
    removes A's answer (listed in changed), and A's retry of it is "not enabled"."""
    body = await published(client)
    await bound_kit(client, kit_id, user, body, {"smoker": True})
    a = await patch(client, kit_id, user, {"perDay": 5}, baseVersion=1)
    assert a.status_code == 200, a.text
    b = await patch(client, kit_id, user, {"smoker": False}, baseVersion=1)
    assert b.status_code == 200, b.text
    assert b.json()["answers"] == {"smoker": False}
    again = await patch(client, kit_id, user, {"perDay": 6}, baseVersion=3)
    assert fields(again) == [("answers.perDay", "not enabled")]


# --- moving a kit to another version --------------------------------------------------------


async def move(
    client: httpx.AsyncClient, kit_id: str, user: str, version: str, drop: bool = False
) -> httpx.Response:
    return await client.post(
        hi_url(kit_id, "/questionnaire"),
        json={"version": version, "dropInvalid": drop},
        headers=auth(user),
    )


async def test_moving_a_kit_to_another_version_is_a_new_version(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    await published(client, id=body["id"], version="2")
    await bound_kit(client, kit_id, user, body, {"smoker": False})
    moved = await move(client, kit_id, user, "2")
    assert moved.status_code == 200, moved.text
    assert moved.json()["questionnaire"] == {"id": body["id"], "version": "2"}
    assert moved.json()["version"] == 2


async def test_answers_the_new_version_rejects_are_422_or_dropped_with_drop_invalid(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    second = copy.deepcopy(body) | {"version": "2"}
    second["items"] = [i for i in second["items"] if i["id"] not in ("feverDays",)]
    assert (await publish(client, second)).status_code == 201
    await bound_kit(client, kit_id, user, body, {"symptoms": ["fever"], "feverDays": 2})
    assert fields(await move(client, kit_id, user, "2")) == [
        ("answers.feverDays", "unknown question id")
    ]
    dropped = await move(client, kit_id, user, "2", drop=True)
    assert dropped.status_code == 200, dropped.text
    assert dropped.json()["answers"] == {"symptoms": ["fever"]}
    history = await client.get(hi_url(kit_id, "/history"), headers=auth(user))
    assert history.json()["items"][0]["changed"] == ["feverDays"]


async def test_moving_a_kit_is_audited(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    body = await published(client)
    await published(client, id=body["id"], version="2")
    await bound_kit(client, kit_id, user, body, {"smoker": False})
    await move(client, kit_id, user, "2")
    audit = await client.get(f"/v1/kits/{kit_id}/audit-events", headers=admin())
    assert "health-information.move-questionnaire" in [e["action"] for e in audit.json()["items"]]


# --- FHIR views -------------------------------------------------------------------------------

FHIR = "application/fhir+json"


async def test_a_questionnaire_with_groups_and_conditions_is_served_as_fhir(
    client: httpx.AsyncClient, user: str
) -> None:
    body = await published(client)
    response = await client.get(
        f"/v1/questionnaires/{body['id']}", headers={**auth(user), "Accept": FHIR}
    )
    assert response.status_code == 200, response.text
    items = {item["linkId"]: item for item in response.json()["item"]}
    assert items["intro"] == {"linkId": "intro", "text": "A few questions.", "type": "display"}
    assert items["perDay"]["enableWhen"] == [
        {"question": "smoker", "operator": "=", "answerBoolean": True}
    ]
    assert items["feverDays"]["enableWhen"][0]["answerCoding"]["code"] == "fever"
    group = items["medications"]
    assert (group["type"], group["repeats"]) == ("group", True)
    assert group["extension"] == [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/questionnaire-maxOccurs",
            "valueInteger": 3,
        }
    ]
    assert [child["linkId"] for child in group["item"]] == [
        "name",
        "doseMg",
        "daily",
        "timesPerDay",
    ]


async def test_a_repeating_group_is_one_response_item_per_row_in_fhir(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    rows = [{"name": "a", "doseMg": 5}, {"name": "b"}]
    await bound_kit(client, kit_id, user, body, {"smoker": False, "medications": rows})
    response = await client.get(hi_url(kit_id), headers={**auth(user), "Accept": FHIR})
    assert response.status_code == 200, response.text
    items = response.json()["item"]
    assert [item["linkId"] for item in items] == ["smoker", "medications", "medications"]
    assert items[1]["item"] == [
        {"linkId": "name", "text": "name", "answer": [{"valueString": "a"}]},
        {"linkId": "doseMg", "text": "doseMg", "answer": [{"valueInteger": 5}]},
    ]


# --- binding by the claim ---------------------------------------------------------------------


async def claim(
    client: httpx.AsyncClient, kit_id: str, user: str, ref: dict[str, str]
) -> httpx.Response:
    return await client.post(
        f"/v1/kits/{kit_id}/claim", json={"questionnaire": ref}, headers=auth(user)
    )


async def test_the_claim_binds_the_kit_before_anything_is_saved(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    claimed = await claim(client, kit_id, user, {"id": body["id"]})
    assert claimed.status_code == 201, claimed.text
    saved = await client.put(
        hi_url(kit_id), json={"answers": {"smoker": False}}, headers=auth(user)
    )
    assert saved.status_code == 201, saved.text
    assert saved.json()["questionnaire"] == {"id": body["id"], "version": "1"}


async def test_a_first_write_naming_another_questionnaire_than_the_claim_is_409(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    await claim(client, kit_id, user, {"id": body["id"]})
    response = await client.put(
        hi_url(kit_id),
        json={"answers": {}, "questionnaire": {"id": "health-information"}},
        headers=auth(user),
    )
    assert response.status_code == 409
    assert response.json()["code"] == "questionnaire-mismatch"


async def test_a_claim_naming_a_retired_version_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    await client.post(f"/v1/questionnaires/{body['id']}/versions/1/retire", headers=admin())
    response = await claim(client, kit_id, user, {"id": body["id"], "version": "1"})
    assert fields(response) == [("questionnaire.version", "is retired")]


# --- reading a kit's binding ------------------------------------------------------------------


async def test_a_kits_questionnaire_version_is_readable_before_anything_is_saved(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    await published(client, id=body["id"], version="2")  # newer, but the claim named 1
    await claim(client, kit_id, user, {"id": body["id"], "version": "1"})
    response = await client.get(hi_url(kit_id, "/questionnaire"), headers=auth(user))
    assert response.status_code == 200, response.text
    assert response.json() == {"id": body["id"], "version": "1"}


async def test_a_kits_questionnaire_version_follows_a_move(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = await published(client)
    await published(client, id=body["id"], version="2")
    await bound_kit(client, kit_id, user, body, {"smoker": False})
    assert (await move(client, kit_id, user, "2")).status_code == 200
    response = await client.get(hi_url(kit_id, "/questionnaire"), headers=auth(user))
    assert response.json() == {"id": body["id"], "version": "2"}


async def test_an_unbound_kit_names_the_version_a_first_write_would_get(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    assert (await client.post(f"/v1/kits/{kit_id}/claim", headers=auth(user))).status_code == 201
    response = await client.get(hi_url(kit_id, "/questionnaire"), headers=auth(user))
    assert response.json() == {"id": "health-information", "version": "1"}
    saved = await client.put(hi_url(kit_id), json={"answers": {}}, headers=auth(user))
    assert saved.json()["questionnaire"] == response.json()


@pytest.mark.parametrize(
    "binding", [{"id": "\x00"}, {"id": "health-information", "version": "1\x00"}]
)
async def test_a_questionnaire_binding_with_control_characters_is_422(
    client: httpx.AsyncClient, binding: dict[str, str]
) -> None:
    """Not a database error: PostgreSQL refuses NUL in text (found by Schemathesis)."""
    kit_id, user = f"KIT-{uuid.uuid4().hex[:12]}", f"user-{uuid.uuid4().hex[:8]}"
    claim = await client.post(
        f"/v1/kits/{kit_id}/claim", json={"questionnaire": binding}, headers=auth(user)
    )
    put = await client.put(
        hi_url(kit_id), json={"answers": {}, "questionnaire": binding}, headers=auth(user)
    )
    assert (claim.status_code, put.status_code) == (422, 422), (claim.text, put.text)
