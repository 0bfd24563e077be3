"""FHIR R4 over REST: content negotiation on the health information and questionnaire routes.

``Accept: application/fhir+json`` on ``GET /v1/kits/{kitId}/health-information`` (the contract)
and on ``GET /v1/questionnaires/{id}``; ``PUT`` with ``Content-Type: application/fhir+json``
(docs/fhir.md). Resources are checked with the same R4 checks as tests/support/fhir_validity.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from healthinfo.fhir.mapping import answers_from_fhir, questionnaire_to_fhir
from healthinfo.questionnaires.registry import QuestionnaireRegistry
from tests.support.answers import COMPLETE
from tests.support.fhir_validity import assert_valid_questionnaire, assert_valid_response
from tests.support.legacy import DEPRECATION
from tests.support.problems import assert_problem, error_fields
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio

FHIR = "application/fhir+json"
SHIPPED = QuestionnaireRegistry.builtin().default
SHIPPED_FHIR = questionnaire_to_fhir(SHIPPED)
CODES = "urn:healthinfo/CodeSystem/health-information"


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


def media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0].strip()


def vary(response: httpx.Response) -> set[str]:
    return {v.strip().lower() for v in response.headers.get("vary", "").split(",") if v.strip()}


async def put_json(
    client: httpx.AsyncClient, kit_id: str, user: str, answers: dict[str, Any], **extra: Any
) -> httpx.Response:
    response = await client.put(url(kit_id), json={"answers": answers, **extra}, headers=auth(user))
    assert response.status_code in (200, 201), response.text
    return response


async def get_fhir(
    client: httpx.AsyncClient, kit_id: str, user: str, **headers: str
) -> httpx.Response:
    return await client.get(url(kit_id), headers={**auth(user), "Accept": FHIR, **headers})


async def put_fhir(
    client: httpx.AsyncClient,
    kit_id: str,
    user: str,
    resource: Any,
    *,
    accept: str | None = None,
    **headers: str,
) -> httpx.Response:
    all_headers = {**auth(user), "Content-Type": FHIR, **headers}
    if accept is not None:
        all_headers["Accept"] = accept
    return await client.put(url(kit_id), json=resource, headers=all_headers)


def coding(question_id: str, code: str) -> dict[str, Any]:
    return {"valueCoding": {"system": f"{CODES}-{question_id}", "code": code}}


def questionnaire_response(status: str = "in-progress", **answers: Any) -> dict[str, Any]:
    """A QuestionnaireResponse as a FHIR client would build it for the shipped questionnaire."""
    items = []
    for question_id, value in answers.items():
        question = SHIPPED.item(question_id)
        assert question is not None
        if question.type == "single-choice":
            answer = [coding(question_id, value)]
        elif question.type == "multiple-choice":
            answer = [coding(question_id, v) for v in value]
        else:
            key = {
                "boolean": "valueBoolean",
                "integer": "valueInteger",
                "decimal": "valueDecimal",
                "date": "valueDate",
            }.get(question.type, "valueString")
            answer = [{key: value}]
        items.append({"linkId": question_id, "answer": answer})
    resource: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "urn:healthinfo/Questionnaire/health-information|1",
        "status": status,
    }
    if items:
        resource["item"] = items
    return resource


# --- GET health information as FHIR -----------------------------------------------------------


async def test_get_with_accept_fhir_is_a_valid_questionnaire_response(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    answers = {**COMPLETE, "conditions": ["asthma", "hypertension"], "medications": "None"}
    saved = (await put_json(client, kit_id, user, answers)).json()
    response = await get_fhir(client, kit_id, user)
    assert response.status_code == 200, response.text
    assert media_type(response) == FHIR
    assert response.headers["etag"] == 'W/"1"'
    assert "accept" in vary(response)
    resource = response.json()
    assert_valid_response(resource, SHIPPED_FHIR)
    assert resource["id"] == kit_id
    assert resource["identifier"]["value"] == kit_id
    assert resource["status"] == "in-progress"
    assert resource["meta"]["versionId"] == "1"
    assert resource["meta"]["lastUpdated"] == saved["updatedAt"]
    assert resource["authored"] == saved["updatedAt"]
    assert resource["author"]["identifier"]["value"] == user
    assert answers_from_fhir(resource, SHIPPED).answers == answers


async def test_get_without_accept_fhir_is_still_the_json_representation(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    saved = (await put_json(client, kit_id, user, {"heightCm": 180})).json()
    for accept in (None, "application/json", "*/*", "application/json, application/*"):
        headers = auth(user) if accept is None else {**auth(user), "Accept": accept}
        response = await client.get(url(kit_id), headers=headers)
        assert response.status_code == 200
        assert media_type(response) == "application/json"
        assert response.headers["etag"] == '"1"'
        assert "accept" in vary(response)
        assert response.json() == saved


async def test_get_fhir_of_submitted_data_is_completed(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put_json(client, kit_id, user, COMPLETE, submitted=True)
    resource = (await get_fhir(client, kit_id, user)).json()
    assert resource["status"] == "completed"
    assert_valid_response(resource, SHIPPED_FHIR)


async def test_get_fhir_if_none_match_is_304_with_the_fhir_etag(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put_json(client, kit_id, user, {"heightCm": 180})
    for tag in ('W/"1"', '"1"'):
        response = await get_fhir(client, kit_id, user, **{"If-None-Match": tag})
        assert response.status_code == 304
        assert response.headers["etag"] == 'W/"1"'
    assert (await get_fhir(client, kit_id, user, **{"If-None-Match": 'W/"0"'})).status_code == 200


async def test_get_fhir_before_anything_is_saved_is_a_404_problem(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    assert_problem(await get_fhir(client, kit_id, user), 404, "not-found")


async def test_get_fhir_of_someone_elses_kit_is_404(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put_json(client, kit_id, user, {"heightCm": 180})
    assert_problem(await get_fhir(client, kit_id, f"{user}-other"), 404, "not-found")


async def test_get_fhir_of_a_kit_id_with_underscore_keeps_it_in_the_identifier(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    kit = f"{kit_id}_x"
    await put_json(client, kit, user, {"heightCm": 180})
    resource = (await get_fhir(client, kit, user)).json()
    assert "id" not in resource
    assert resource["identifier"]["value"] == kit
    assert_valid_response(resource, SHIPPED_FHIR)


async def test_legacy_route_negotiates_too(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put_json(client, kit_id, user, {"heightCm": 180})
    response = await client.get(
        f"/kits/{kit_id}/health-information", headers={**auth(user), "Accept": FHIR}
    )
    assert response.status_code == 200
    assert media_type(response) == FHIR
    assert response.headers["deprecation"] == DEPRECATION


# --- GET questionnaire as FHIR ----------------------------------------------------------------


async def test_questionnaire_with_accept_fhir_is_a_valid_questionnaire(
    client: httpx.AsyncClient, user: str
) -> None:
    response = await client.get(
        "/v1/questionnaires/health-information", headers={**auth(user), "Accept": FHIR}
    )
    assert response.status_code == 200
    assert media_type(response) == FHIR
    assert "accept" in vary(response)
    resource = response.json()
    assert_valid_questionnaire(resource)
    assert resource == SHIPPED_FHIR
    assert resource["url"] == "urn:healthinfo/Questionnaire/health-information"
    assert [item["linkId"] for item in resource["item"]] == [item.id for item in SHIPPED.items]


async def test_questionnaire_without_accept_fhir_is_the_json_definition(
    client: httpx.AsyncClient, user: str
) -> None:
    response = await client.get("/v1/questionnaires/health-information", headers=auth(user))
    assert response.status_code == 200
    assert media_type(response) == "application/json"
    assert response.json() == SHIPPED.to_public_dict()


async def test_unknown_questionnaire_as_fhir_is_404(client: httpx.AsyncClient, user: str) -> None:
    response = await client.get("/v1/questionnaires/nope", headers={**auth(user), "Accept": FHIR})
    assert_problem(response, 404, "not-found")


# --- PUT a QuestionnaireResponse --------------------------------------------------------------


async def test_put_fhir_saves_the_answers(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    resource = questionnaire_response(
        heightCm=180, weightKg=70.5, sexAtBirth="male", conditions=["asthma"], vaping=False
    )
    response = await put_fhir(client, kit_id, user, resource)
    assert response.status_code == 201, response.text
    saved = (await client.get(url(kit_id), headers=auth(user))).json()
    assert saved["answers"] == {
        "heightCm": 180,
        "weightKg": 70.5,
        "sexAtBirth": "male",
        "conditions": ["asthma"],
        "vaping": False,
    }
    assert saved["status"] == "in-progress"
    assert saved["version"] == 1


async def test_put_fhir_answers_in_fhir_unless_json_is_asked_for(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    first = await put_fhir(client, kit_id, user, questionnaire_response(heightCm=180))
    assert first.status_code == 201
    assert media_type(first) == FHIR
    assert first.headers["etag"] == 'W/"1"'
    assert_valid_response(first.json(), SHIPPED_FHIR)
    second = await put_fhir(
        client, kit_id, user, questionnaire_response(heightCm=181), accept="application/json"
    )
    assert second.status_code == 200
    assert media_type(second) == "application/json"
    assert second.headers["etag"] == '"2"'
    assert second.json()["answers"] == {"heightCm": 181}


async def test_put_json_answers_in_fhir_when_asked(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await client.put(
        url(kit_id), json={"answers": {"heightCm": 180}}, headers={**auth(user), "Accept": FHIR}
    )
    assert response.status_code == 201
    assert media_type(response) == FHIR
    assert_valid_response(response.json(), SHIPPED_FHIR)


async def test_put_fhir_completed_submits(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put_fhir(client, kit_id, user, questionnaire_response("completed", **COMPLETE))
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "completed"
    saved = (await client.get(url(kit_id), headers=auth(user))).json()
    assert saved["status"] == "submitted"
    assert saved["answers"] == COMPLETE
    assert saved["version"] == 1
    again = await put_fhir(client, kit_id, user, questionnaire_response("in-progress", **COMPLETE))
    assert_problem(again, 409, "already-submitted")


async def test_put_fhir_completed_with_missing_answers_is_422_and_saves_nothing(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    resource = questionnaire_response("completed", heightCm=180)
    body = assert_problem(await put_fhir(client, kit_id, user, resource), 422, "validation-failed")
    assert "answers.dateOfBirth" in error_fields(body)
    assert "answers.heightCm" not in error_fields(body)
    assert (await client.get(url(kit_id), headers=auth(user))).status_code == 404


async def test_what_get_returns_can_be_put_back_unchanged(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put_json(client, kit_id, user, {**COMPLETE, "symptoms": ["cough", "fever"]})
    resource = (await get_fhir(client, kit_id, user)).json()
    response = await put_fhir(client, kit_id, user, resource)
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["versionId"] == "1"  # a write that changes nothing


async def test_put_fhir_version_aware_update_with_weak_if_match(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    await put_fhir(client, kit_id, user, questionnaire_response(heightCm=180))
    stale = await put_fhir(
        client, kit_id, user, questionnaire_response(heightCm=181), **{"If-Match": 'W/"7"'}
    )
    assert_problem(stale, 412, "version-conflict")
    current = await put_fhir(
        client, kit_id, user, questionnaire_response(heightCm=181), **{"If-Match": 'W/"1"'}
    )
    assert current.status_code == 200, current.text
    assert current.headers["etag"] == 'W/"2"'


async def test_put_fhir_with_unknown_link_id_and_wrong_value_type_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    resource = questionnaire_response(heightCm=180) | {
        "item": [
            {"linkId": "noSuchQuestion", "answer": [{"valueBoolean": True}]},
            {"linkId": "heightCm", "answer": [{"valueString": "180 cm"}]},
            {"linkId": "vaping", "answer": [{"valueBoolean": "yes"}]},
        ]
    }
    response = await put_fhir(client, kit_id, user, resource)
    body = assert_problem(response, 422, "validation-failed")
    assert error_fields(body) == ["item[0].linkId", "item[1].answer[0]", "item[2].answer[0]"]
    assert "180 cm" not in response.text
    assert (await client.get(url(kit_id), headers=auth(user))).status_code == 404


async def test_put_fhir_answer_breaking_the_questionnaire_is_422_on_the_answer(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    resource = questionnaire_response(heightCm=999, sexAtBirth="unknown-code")
    body = assert_problem(await put_fhir(client, kit_id, user, resource), 422, "validation-failed")
    assert error_fields(body) == ["answers.heightCm", "answers.sexAtBirth"]


@pytest.mark.parametrize(
    ("resource", "field"),
    [
        ({"resourceType": "Patient", "status": "completed"}, "resourceType"),
        ({"resourceType": "QuestionnaireResponse"}, "status"),
        ({"resourceType": "QuestionnaireResponse", "status": "amended"}, "status"),
        (
            {
                "resourceType": "QuestionnaireResponse",
                "status": "in-progress",
                "questionnaire": "http://example.org/Questionnaire/other",
            },
            "questionnaire",
        ),
        (
            {
                "resourceType": "QuestionnaireResponse",
                "status": "in-progress",
                "item": [{"linkId": "vaping", "item": [{"linkId": "heightCm"}]}],
            },
            "item[0].item",
        ),
    ],
)
async def test_put_invalid_fhir_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str, resource: dict[str, Any], field: str
) -> None:
    body = assert_problem(await put_fhir(client, kit_id, user, resource), 422, "validation-failed")
    assert error_fields(body) == [field]


async def test_put_fhir_that_is_not_a_json_object_is_400(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    for content in (b"{not json", b"[]"):
        response = await client.put(
            url(kit_id), content=content, headers={**auth(user), "Content-Type": FHIR}
        )
        assert_problem(response, 400, "malformed-request")


async def test_other_content_types_are_still_415(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await client.put(
        url(kit_id),
        content=b"<QuestionnaireResponse/>",
        headers={**auth(user), "Content-Type": "application/fhir+xml"},
    )
    assert_problem(response, 415, "unsupported-media-type")


async def test_patch_does_not_take_fhir(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    response = await client.patch(
        url(kit_id),
        json=questionnaire_response(heightCm=180),
        headers={**auth(user), "Content-Type": FHIR},
    )
    assert_problem(response, 415, "unsupported-media-type")
