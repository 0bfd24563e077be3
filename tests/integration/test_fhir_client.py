"""A FHIR client library nobody here wrote uses the FHIR base unchanged (#18, "Proof with real
clients"): SMART on FHIR's ``fhirclient`` (4.x, FHIR R4) reads the CapabilityStatement, reads,
searches (following ``next`` links) and updates, against a real ``healthinfo serve``.

``fhirclient`` parses every resource into its own R4 models, which refuse unknown elements
and wrong types, so these tests are also a second, independent validation of what is emitted
(``fhir.resources`` is the first, tests/integration/test_fhir_api.py). The service is not a
SMART authorization server: the client sends the bearer token it was given on its session.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from fhirclient import client as fhir_client
from fhirclient.models.operationoutcome import OperationOutcome
from fhirclient.models.questionnaire import Questionnaire
from fhirclient.models.questionnaireresponse import QuestionnaireResponse
from fhirclient.server import FHIRNotFoundException

from tests.support.answers import COMPLETE
from tests.support.server import ServerProcess
from tests.support.tokens import auth, token

pytestmark = pytest.mark.slow


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def http(live_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.base_url, timeout=10) as session:
        yield session


def connect(live_server: ServerProcess, user: str) -> fhir_client.FHIRClient:
    """A client of the FHIR base, with the user's token on every request."""
    smart = fhir_client.FHIRClient(
        settings={"app_id": "healthinfo-tests", "api_base": f"{live_server.base_url}/v1/fhir/"}
    )
    smart.server.session.headers["Authorization"] = f"Bearer {token(user)}"
    return smart


def save(http: httpx.Client, kit_id: str, user: str, answers: dict[str, Any]) -> None:
    response = http.put(
        f"/v1/kits/{kit_id}/health-information", json={"answers": answers}, headers=auth(user)
    )
    assert response.status_code in (200, 201), response.text


def current(http: httpx.Client, kit_id: str, user: str) -> dict[str, Any]:
    response = http.get(f"/v1/kits/{kit_id}/health-information", headers=auth(user))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_fhirclient_reads_the_capability_statement(live_server: ServerProcess) -> None:
    smart = connect(live_server, new_user())
    statement = smart.server.capabilityStatement
    assert statement.fhirVersion == "4.0.1"
    types = {resource.type for resource in statement.rest[0].resource}
    assert types >= {"Questionnaire", "QuestionnaireResponse"}


def test_fhirclient_reads_a_questionnaire_and_a_questionnaire_response(
    live_server: ServerProcess, http: httpx.Client
) -> None:
    user, kit_id = new_user(), f"KIT-{uuid.uuid4().hex[:12]}"
    save(http, kit_id, user, {**COMPLETE, "conditions": ["asthma"]})
    smart = connect(live_server, user)

    questionnaire = Questionnaire.read("health-information", smart.server)
    assert (questionnaire.url, questionnaire.version) == (
        "urn:healthinfo/Questionnaire/health-information",
        "1",
    )
    response = QuestionnaireResponse.read(kit_id, smart.server)
    assert response.id == kit_id
    assert response.status == "in-progress"
    assert response.meta.versionId == "1"
    answered = {item.linkId: item.answer[0] for item in response.item}
    assert answered["heightCm"].valueInteger == COMPLETE["heightCm"]
    assert answered["sexAtBirth"].valueCoding.code == COMPLETE["sexAtBirth"]


def test_fhirclient_searches_every_page(live_server: ServerProcess, http: httpx.Client) -> None:
    user = new_user()
    kits = sorted(f"KIT-{uuid.uuid4().hex[:12]}" for _ in range(5))
    for kit_id in kits:
        save(http, kit_id, user, {"heightCm": 170})
    smart = connect(live_server, user)
    search = QuestionnaireResponse.where(struct={"status": "in-progress", "_count": "2"})
    pages = list(search.perform_iter(smart.server))
    assert len(pages) == 3
    found = [entry.resource.id for page in pages for entry in page.entry or []]
    assert found == kits


def test_fhirclient_updates_and_a_stale_version_is_refused(
    live_server: ServerProcess, http: httpx.Client
) -> None:
    user, kit_id = new_user(), f"KIT-{uuid.uuid4().hex[:12]}"
    save(http, kit_id, user, {"heightCm": 170, "smokingStatus": "never"})
    smart = connect(live_server, user)
    response = QuestionnaireResponse.read(kit_id, smart.server)
    height = next(item for item in response.item if item.linkId == "heightCm")
    height.answer[0].valueInteger = 171

    smart.server.session.headers["If-Match"] = 'W/"1"'  # version-aware: update only version 1
    updated = response.update(smart.server)
    assert updated is not None
    assert updated["meta"]["versionId"] == "2"
    state = current(http, kit_id, user)
    assert (state["version"], state["answers"]) == (2, {"heightCm": 171, "smokingStatus": "never"})

    with pytest.raises(requests.HTTPError) as refused:
        response.update(smart.server)  # still If-Match: W/"1"
    assert refused.value.response.status_code == 412
    outcome = OperationOutcome(refused.value.response.json())
    assert outcome.issue[0].details.coding[0].code == "version-conflict"
    assert current(http, kit_id, user)["version"] == 2


def test_fhirclient_sees_another_users_kit_as_not_found(
    live_server: ServerProcess, http: httpx.Client
) -> None:
    kit_id = f"KIT-{uuid.uuid4().hex[:12]}"
    save(http, kit_id, new_user(), {"heightCm": 170})
    smart = connect(live_server, new_user())
    with pytest.raises(FHIRNotFoundException) as refused:
        QuestionnaireResponse.read(kit_id, smart.server)
    outcome = OperationOutcome(refused.value.response.json())
    assert outcome.issue[0].details.coding[0].code == "not-found"
