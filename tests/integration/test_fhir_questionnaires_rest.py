"""Publishing FHIR Questionnaires, and FHIR answers with groups and repetitions, over HTTP."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.support.fhir_family import family_answers, fhir_questionnaire
from tests.support.fhir_validity import assert_valid_questionnaire, assert_valid_response
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio

FHIR = "application/fhir+json"
LOINC = "http://loinc.org"


def admin() -> dict[str, str]:
    return auth(f"admin-{uuid.uuid4().hex[:6]}", "admin")


async def publish_fhir(client: httpx.AsyncClient, resource: Any, **headers: str) -> httpx.Response:
    return await client.post(
        "/v1/questionnaires",
        content=json.dumps(resource),
        headers={**admin(), "Content-Type": FHIR, **headers},
    )


def new_id() -> str:
    return f"family-{uuid.uuid4().hex[:8]}"


async def test_a_fhir_questionnaire_is_published_with_its_location(
    client: httpx.AsyncClient,
) -> None:
    questionnaire_id = new_id()
    resource = fhir_questionnaire(questionnaire_id)
    response = await publish_fhir(client, resource)
    assert response.status_code == 201, response.text
    location = f"/v1/questionnaires/{questionnaire_id}/versions/2"
    assert response.headers["location"] == location
    assert response.headers["content-type"].startswith(FHIR)  # the body's format
    assert response.json() == resource  # in the service's form, so exactly what was sent
    as_json = await client.get(location, headers=auth("reader-1"))
    assert as_json.status_code == 200
    definition = as_json.json()
    assert (definition["id"], definition["version"]) == (questionnaire_id, "2")
    assert definition["url"] == resource["url"]
    assert definition["fhirExtensions"] == resource["extension"]
    family = definition["items"][1]
    assert (family["repeats"], family["maxItems"]) == (True, 5)
    assert family["items"][0]["openChoice"] is True
    as_fhir = await client.get(location, headers={**auth("reader-1"), "Accept": FHIR})
    assert as_fhir.status_code == 200
    assert as_fhir.json() == resource
    assert_valid_questionnaire(as_fhir.json())


async def test_the_same_fhir_questionnaire_again_is_200_and_other_content_409(
    client: httpx.AsyncClient,
) -> None:
    resource = fhir_questionnaire(new_id())
    assert (await publish_fhir(client, resource)).status_code == 201
    assert (await publish_fhir(client, resource)).status_code == 200
    changed = copy.deepcopy(resource)
    changed["title"] = "Another title"
    conflict = await publish_fhir(client, changed)
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "questionnaire-version-exists"


async def test_json_is_returned_when_accept_asks_for_it(client: httpx.AsyncClient) -> None:
    response = await publish_fhir(client, fhir_questionnaire(new_id()), Accept="application/json")
    assert response.status_code == 201
    assert response.json()["items"][0]["id"] == "/about"


async def test_publishing_fhir_is_audited(client: httpx.AsyncClient) -> None:
    questionnaire_id = new_id()
    assert (await publish_fhir(client, fhir_questionnaire(questionnaire_id))).status_code == 201
    events = await client.get(
        "/v1/kits/questionnaire-definitions/audit-events", params={"limit": 200}, headers=admin()
    )
    refs = [
        ref
        for event in events.json()["items"]
        if event["action"] == "questionnaire.publish"
        for ref in event["changed"]
    ]
    assert f"{questionnaire_id}|2" in refs


async def test_only_an_admin_publishes_fhir(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/questionnaires",
        content=json.dumps(fhir_questionnaire(new_id())),
        headers={**auth("user-x"), "Content-Type": FHIR},
    )
    assert response.status_code == 403


async def test_unsupported_constructs_are_a_422_listing_each_link_id(
    client: httpx.AsyncClient,
) -> None:
    resource = fhir_questionnaire(new_id())
    about = resource["item"][0]
    about["item"][0]["modifierExtension"] = [
        {"url": "http://example.org/negated", "valueBoolean": True}
    ]
    about["item"][1]["answerValueSet"] = "http://loinc.org/vs/LL358-3"
    del about["item"][1]["answerOption"]
    family = resource["item"][1]
    family["item"][2]["enableWhen"].append(
        {"question": "/family/living", "operator": "exists", "answerBoolean": True}
    )
    family["item"][1]["code"] = [{"system": LOINC, "code": "x"}]
    response = await publish_fhir(client, resource)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation-failed"
    errors = [(e["field"], e["message"]) for e in problem["errors"]]
    assert (
        "item[0].item[0].modifierExtension[0]",
        "linkId '/about/age': modifierExtension http://example.org/negated is not understood",
    ) in errors
    assert (
        "item[0].item[1].answerValueSet",
        "linkId '/about/mood': must name a ValueSet contained in this Questionnaire (#id)",
    ) in errors
    assert (
        "item[1].item[1].code",
        "linkId '/family/living': code is not supported (docs/fhir.md)",
    ) in errors
    assert (
        "item[1].item[2]",
        "linkId '/family/died': enableBehavior is required with two or more conditions",
    ) in errors
    assert len(errors) == 4


async def test_a_repeating_choice_publishes_as_a_multiple_choice_and_a_repeating_integer_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    resource = fhir_questionnaire(new_id())
    mood = resource["item"][0]["item"][1]
    mood["repeats"] = True  # several answers: our multiple choice
    response = await publish_fhir(client, resource)
    assert response.status_code == 201, response.text
    assert response.json()["item"][0]["item"][1]["repeats"] is True
    definition = (await client.get(response.headers["location"], headers=auth(user))).json()
    assert definition["items"][0]["items"][1]["type"] == "multiple-choice"
    claim = {"questionnaire": {"id": resource["id"], "version": "2"}}
    claimed = await client.post(f"/v1/kits/{kit_id}/claim", json=claim, headers=auth(user))
    assert claimed.status_code == 201, claimed.text
    written = await client.put(
        f"/v1/kits/{kit_id}/health-information",
        json={"answers": {"/about/mood": ["LA6568-5", "LA6569-3"]}},
        headers=auth(user),
    )
    assert written.status_code in (200, 201), written.text

    refused = fhir_questionnaire(new_id())
    refused["item"][0]["item"][0]["repeats"] = True  # several ages: nothing in ours to hold them
    response = await publish_fhir(client, refused)
    assert response.status_code == 422, response.text
    errors = [(e["field"], e["message"]) for e in response.json()["errors"]]
    assert errors == [
        (
            "item[0].item[0].repeats",
            "linkId '/about/age': repeats is supported on groups and choices, not on integer items",
        )
    ]
    absent = await client.get(f"/v1/questionnaires/{refused['id']}", headers=auth(user))
    assert absent.status_code == 404  # nothing was published


async def test_a_fhir_questionnaire_without_an_id_is_422(client: httpx.AsyncClient) -> None:
    resource = fhir_questionnaire(new_id())
    del resource["id"]
    response = await publish_fhir(client, resource)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["id"]


async def test_a_questionnaire_response_with_groups_and_rows_is_written_and_read_back(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    questionnaire_id = new_id()
    resource = fhir_questionnaire(questionnaire_id)
    assert (await publish_fhir(client, resource)).status_code == 201
    claimed = await client.post(
        f"/v1/kits/{kit_id}/claim",
        json={"questionnaire": {"id": questionnaire_id, "version": "2"}},
        headers=auth(user),
    )
    assert claimed.status_code == 201, claimed.text
    answers = family_answers(resource, "in-progress")
    url = f"/v1/kits/{kit_id}/health-information"
    saved = await client.put(
        url, content=json.dumps(answers), headers={**auth(user), "Content-Type": FHIR}
    )
    assert saved.status_code == 201, saved.text
    as_json = await client.get(url, headers=auth(user))
    assert as_json.json()["answers"] == {
        "/about/age": 47,
        "/about/mood": "LA6569-3",
        "/family": [
            {"/family/who": "Mother", "/family/living": False, "/family/died": "2019-05-01"},
            {"/family/who": "Aunt"},
        ],
    }
    as_fhir = await client.get(url, headers={**auth(user), "Accept": FHIR})
    assert as_fhir.status_code == 200
    read_back = as_fhir.json()
    questionnaire = await client.get(
        f"/v1/questionnaires/{questionnaire_id}/versions/2", headers={**auth(user), "Accept": FHIR}
    )
    assert_valid_response(read_back, questionnaire.json())
    [about, mother, aunt] = read_back["item"]
    assert about["item"][1]["answer"] == [
        {"valueCoding": {"system": LOINC, "code": "LA6569-3", "display": "Some"}}
    ]
    assert [i["linkId"] for i in mother["item"]] == [
        "/family/who",
        "/family/living",
        "/family/died",
    ]
    assert aunt["item"] == [
        {"linkId": "/family/who", "text": "Relationship", "answer": [{"valueString": "Aunt"}]}
    ]


async def test_a_questionnaire_response_is_checked_against_the_kits_questionnaire(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    questionnaire_id = new_id()
    assert (await publish_fhir(client, fhir_questionnaire(questionnaire_id))).status_code == 201
    await client.post(
        f"/v1/kits/{kit_id}/claim",
        json={"questionnaire": {"id": questionnaire_id}},
        headers=auth(user),
    )
    flat = {
        "resourceType": "QuestionnaireResponse",
        "status": "in-progress",
        "item": [
            {"linkId": "/about/age", "answer": [{"valueInteger": 47}]},
            {
                "linkId": "/family",
                "item": [{"linkId": "/family/died", "answer": [{"valueDate": "2019-05-01"}]}],
            },
            {
                "linkId": "/family",
                "answer": [{"valueString": "x"}],
                "item": [{"linkId": "/family/who", "answer": [{"valueString": "Aunt"}]}],
            },
        ],
    }
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information",
        content=json.dumps(flat),
        headers={**auth(user), "Content-Type": FHIR},
    )
    assert response.status_code == 422, response.text
    assert [(e["field"], e["message"]) for e in response.json()["errors"]] == [
        (
            "item[0].linkId",
            "linkId '/about/age': is not an item at this level: "
            "nest items as the questionnaire does",
        ),
        ("item[2].answer", "linkId '/family': a group item has no answer"),
    ]
    # A row whose condition does not hold is refused by the usual rules, naming the row.
    disabled = copy.deepcopy(flat)
    disabled["item"] = [disabled["item"][1]]
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information",
        content=json.dumps(disabled),
        headers={**auth(user), "Content-Type": FHIR},
    )
    assert response.status_code == 422, response.text
    assert [(e["field"], e["message"]) for e in response.json()["errors"]] == [
        ("answers./family[0]./family/died", "not enabled")
    ]


async def test_a_questionnaire_response_to_someone_elses_kit_is_404_before_any_parsing(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    assert (
        await client.put(
            f"/v1/kits/{kit_id}/health-information", json={"answers": {}}, headers=auth(user)
        )
    ).status_code == 201
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information",
        content=json.dumps({"resourceType": "QuestionnaireResponse", "status": "bogus"}),
        headers={**auth("someone-else"), "Content-Type": FHIR},
    )
    assert response.status_code == 404, response.text  # no access: as if there were no kit
