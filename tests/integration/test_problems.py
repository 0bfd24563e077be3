"""Bad input gets a precise RFC 9457 problem, and a rejected request writes nothing."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from healthinfo.auth.tokens import mint_token
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.answers import COMPLETE
from tests.support.problems import (
    assert_problem,
    error_fields,
    running_app,
    server_like_client,
)
from tests.support.tokens import TEST_SECRET, auth

pytestmark = pytest.mark.asyncio

MARKER = "MARKER-9c1e"
SMALL_LIMIT = 2048
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def url(kit_id: str, suffix: str = "") -> str:
    return f"/v1/kits/{kit_id}/health-information{suffix}"


def json_headers(user: str, content_type: str = "application/json") -> dict[str, str]:
    return {**auth(user), "Content-Type": content_type}


async def put_raw(
    client: httpx.AsyncClient, kit_id: str, user: str, body: bytes | str
) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else body
    return await client.put(url(kit_id), content=content, headers=json_headers(user))


async def put_json(client: httpx.AsyncClient, kit_id: str, user: str, body: Any) -> httpx.Response:
    return await put_raw(client, kit_id, user, json.dumps(body))


async def assert_nothing_saved(client: httpx.AsyncClient, kit_id: str, user: str) -> None:
    response = await client.get(url(kit_id), headers=auth(user))
    assert response.status_code == 404, response.text


async def seed(client: httpx.AsyncClient, kit_id: str, user: str) -> dict[str, Any]:
    response = await put_json(client, kit_id, user, {"answers": {"heightCm": 180}})
    assert response.status_code == 201, response.text
    saved: dict[str, Any] = response.json()
    return saved


async def assert_unchanged(
    client: httpx.AsyncClient, kit_id: str, user: str, saved: dict[str, Any]
) -> None:
    response = await client.get(url(kit_id), headers=auth(user))
    assert response.status_code == 200
    assert response.json() == saved


def body_of_size(size: int) -> bytes:
    """A valid PUT body of exactly ``size`` bytes (a long free-text answer)."""
    head, tail = b'{"answers":{"additionalNotes":"', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def chunks(body: bytes, size: int = 256) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.fixture(scope="module")
async def small_body_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async with running_app(make_settings(max_body_bytes=SMALL_LIMIT)) as application:
        yield application


@pytest.fixture
async def small_client(small_body_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with await open_client(small_body_app) as http:
        yield http


# --- 400 malformed-request -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"answers": {"heightCm": 180}',
        '{"answers": {"heightCm": 180},}',
        "{'answers': {}}",
        "",
        b'{"answers": {"genderIdentity": "\xff\xfe"}}',
    ],
    ids=["truncated", "trailing-comma", "single-quotes", "empty", "invalid-utf8"],
)
async def test_malformed_json_is_400_and_saves_nothing(
    client: httpx.AsyncClient, kit_id: str, user: str, body: str | bytes
) -> None:
    response = await put_raw(client, kit_id, user, body)
    assert_problem(response, 400, "malformed-request")
    await assert_nothing_saved(client, kit_id, user)


@pytest.mark.parametrize(
    "body",
    ['[{"answers": {"heightCm": 180}}]', "[]", '"answers"', "null", "42", "true"],
    ids=["array-of-object", "empty-array", "string", "null", "number", "boolean"],
)
async def test_json_that_is_not_an_object_is_400(
    client: httpx.AsyncClient, kit_id: str, user: str, body: str
) -> None:
    response = await put_raw(client, kit_id, user, body)
    assert_problem(response, 400, "malformed-request")
    await assert_nothing_saved(client, kit_id, user)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_literals_are_400(
    client: httpx.AsyncClient, kit_id: str, user: str, literal: str
) -> None:
    response = await put_raw(client, kit_id, user, f'{{"answers": {{"weightKg": {literal}}}}}')
    assert_problem(response, 400, "malformed-request")
    await assert_nothing_saved(client, kit_id, user)


@pytest.mark.parametrize("depth", [1000, 100_000])
async def test_deeply_nested_json_is_400_not_500(
    client: httpx.AsyncClient, kit_id: str, user: str, depth: int
) -> None:
    nested = "[" * depth + "]" * depth
    response = await put_raw(client, kit_id, user, f'{{"answers": {{"allergies": {nested}}}}}')
    assert_problem(response, 400, "malformed-request")
    await assert_nothing_saved(client, kit_id, user)


async def test_deeply_nested_objects_are_400(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    nested = '{"a": ' * 1000 + "1" + "}" * 1000
    response = await put_raw(client, kit_id, user, f'{{"answers": {{"allergies": {nested}}}}}')
    assert_problem(response, 400, "malformed-request")
    await assert_nothing_saved(client, kit_id, user)


async def test_malformed_patch_body_is_400_and_changes_nothing(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    saved = await seed(client, kit_id, user)
    response = await client.patch(
        url(kit_id),
        content=b'{"answers": {"heightCm": 150',
        headers=json_headers(user, "application/merge-patch+json"),
    )
    assert_problem(response, 400, "malformed-request")
    await assert_unchanged(client, kit_id, user, saved)


# --- 422 validation-failed -------------------------------------------------------------------


async def test_unknown_top_level_field_is_422_naming_it(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put_json(client, kit_id, user, {"answers": {"heightCm": 180}, "answerz": {}})
    body = assert_problem(response, 422, "validation-failed")
    assert error_fields(body) == ["answerz"]
    await assert_nothing_saved(client, kit_id, user)


async def test_missing_answers_is_422_naming_it(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put_json(client, kit_id, user, {"submitted": False})
    body = assert_problem(response, 422, "validation-failed")
    assert error_fields(body) == ["answers"]
    await assert_nothing_saved(client, kit_id, user)


@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("heightCm", False),
        ("heightCm", True),
        ("heightCm", "180"),
        ("heightCm", 180.0),
        ("heightCm", 180.5),
        ("weightKg", "70.5"),
        ("weightKg", True),
        ("vaping", 1),
        ("vaping", "true"),
        ("dateOfBirth", 19800517),
        ("sexAtBirth", ["female"]),
        ("conditions", "asthma"),
    ],
)
async def test_wrong_answer_type_is_422_and_never_coerced(
    client: httpx.AsyncClient, kit_id: str, user: str, question: str, value: object
) -> None:
    response = await put_json(client, kit_id, user, {"answers": {question: value}})
    body = assert_problem(response, 422, "validation-failed")
    assert error_fields(body) == [f"answers.{question}"]
    await assert_nothing_saved(client, kit_id, user)


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None])
async def test_submitted_that_is_not_a_boolean_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str, value: object
) -> None:
    response = await put_json(client, kit_id, user, {"answers": COMPLETE, "submitted": value})
    body = assert_problem(response, 422, "validation-failed")
    assert error_fields(body) == ["submitted"]
    await assert_nothing_saved(client, kit_id, user)


@pytest.mark.parametrize("value", [True, False, "1", 1.0, -1])
async def test_base_version_that_is_not_a_non_negative_integer_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str, value: object
) -> None:
    saved = await seed(client, kit_id, user)
    response = await put_json(
        client, kit_id, user, {"answers": {"heightCm": 150}, "baseVersion": value}
    )
    body = assert_problem(response, 422, "validation-failed")
    assert error_fields(body) == ["baseVersion"]
    await assert_unchanged(client, kit_id, user, saved)


async def test_patch_with_wrong_answer_type_is_422_and_changes_nothing(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    saved = await seed(client, kit_id, user)
    response = await client.patch(
        url(kit_id),
        json={"answers": {"heightCm": False}},
        headers=json_headers(user, "application/merge-patch+json"),
    )
    body = assert_problem(response, 422, "validation-failed")
    assert error_fields(body) == ["answers.heightCm"]
    await assert_unchanged(client, kit_id, user, saved)


async def test_unknown_question_id_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put_json(
        client, kit_id, user, {"answers": {"heightCm": 180, "favouriteColour": "blue"}}
    )
    body = assert_problem(response, 422, "validation-failed")
    assert error_fields(body) == ["answers.favouriteColour"]
    await assert_nothing_saved(client, kit_id, user)


@pytest.mark.parametrize(
    ("question", "value"),
    [("heightCm", 500), ("heightCm", 29), ("weightKg", 0.5), ("dateOfBirth", "2999-01-01")],
)
async def test_answer_out_of_bounds_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str, question: str, value: object
) -> None:
    response = await put_json(client, kit_id, user, {"answers": {question: value}})
    body = assert_problem(response, 422, "validation-failed")
    assert error_fields(body) == [f"answers.{question}"]
    await assert_nothing_saved(client, kit_id, user)


async def test_several_bad_answers_give_one_error_each(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    answers = {
        "heightCm": 500,
        "weightKg": "heavy",
        "smokingStatus": "sometimes",
        "notAQuestion": 1,
        "vaping": False,
    }
    response = await put_json(client, kit_id, user, {"answers": answers})
    body = assert_problem(response, 422, "validation-failed")
    assert error_fields(body) == [
        "answers.heightCm",
        "answers.notAQuestion",
        "answers.smokingStatus",
        "answers.weightKg",
    ]
    await assert_nothing_saved(client, kit_id, user)


async def test_several_bad_body_fields_give_one_error_each(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put_json(
        client, kit_id, user, {"answers": {}, "submitted": "yes", "baseVersion": True, "x": 1}
    )
    body = assert_problem(response, 422, "validation-failed")
    assert error_fields(body) == ["baseVersion", "submitted", "x"]
    await assert_nothing_saved(client, kit_id, user)


@pytest.mark.parametrize(
    "body",
    [
        {"answers": {"heightCm": MARKER}},
        {"answers": {"vaping": MARKER}},
        {"answers": {"sexAtBirth": MARKER}},
        {"answers": {"dateOfBirth": MARKER}},
        {"answers": {"conditions": [MARKER]}},
        {"answers": {"genderIdentity": MARKER * 20}},
        {"answers": {"notAQuestion": MARKER}},
        {"answers": {"heightCm": 180}, "submitted": MARKER},
        {"answers": {"heightCm": 180}, "baseVersion": MARKER},
        {"answers": MARKER},
    ],
    ids=[
        "integer",
        "boolean",
        "single-choice",
        "date",
        "multiple-choice",
        "too-long-text",
        "unknown-question",
        "submitted",
        "base-version",
        "answers",
    ],
)
async def test_error_bodies_never_contain_the_submitted_value(
    client: httpx.AsyncClient, kit_id: str, user: str, body: dict[str, Any]
) -> None:
    response = await put_json(client, kit_id, user, body)
    assert_problem(response, 422, "validation-failed")
    assert MARKER not in response.text
    await assert_nothing_saved(client, kit_id, user)


async def test_malformed_body_error_never_contains_the_submitted_value(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put_raw(client, kit_id, user, f'{{"answers": {{"medications": "{MARKER}"')
    assert_problem(response, 400, "malformed-request")
    assert MARKER not in response.text


async def test_rejected_write_does_not_claim_the_kit(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    rejected = await put_json(client, kit_id, user, {"answers": {"heightCm": 500}})
    assert rejected.status_code == 422
    other = f"other-{uuid.uuid4().hex[:8]}"
    response = await put_json(client, kit_id, other, {"answers": {"heightCm": 180}})
    assert response.status_code == 201, response.text
    assert response.json()["updatedBy"] == other


# --- 415 and content types -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
async def test_put_with_another_content_type_is_415(
    client: httpx.AsyncClient, kit_id: str, user: str, content_type: str | None
) -> None:
    headers = auth(user) if content_type is None else json_headers(user, content_type)
    response = await client.put(
        url(kit_id), content=json.dumps({"answers": {"heightCm": 180}}), headers=headers
    )
    assert_problem(response, 415, "unsupported-media-type")
    await assert_nothing_saved(client, kit_id, user)


async def test_put_with_merge_patch_content_type_is_415(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await client.put(
        url(kit_id),
        content=json.dumps({"answers": {"heightCm": 180}}),
        headers=json_headers(user, "application/merge-patch+json"),
    )
    assert_problem(response, 415, "unsupported-media-type")
    await assert_nothing_saved(client, kit_id, user)


async def test_patch_with_text_plain_is_415_and_changes_nothing(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    saved = await seed(client, kit_id, user)
    response = await client.patch(
        url(kit_id),
        content=json.dumps({"answers": {"heightCm": 150}}),
        headers=json_headers(user, "text/plain"),
    )
    assert_problem(response, 415, "unsupported-media-type")
    await assert_unchanged(client, kit_id, user, saved)


@pytest.mark.parametrize(
    "content_type", ["application/merge-patch+json", "application/merge-patch+json; charset=utf-8"]
)
async def test_patch_with_merge_patch_content_type_is_accepted(
    client: httpx.AsyncClient, kit_id: str, user: str, content_type: str
) -> None:
    await seed(client, kit_id, user)
    response = await client.patch(
        url(kit_id),
        content=json.dumps({"answers": {"weightKg": 70}}),
        headers=json_headers(user, content_type),
    )
    assert response.status_code == 200, response.text
    assert response.json()["answers"] == {"heightCm": 180, "weightKg": 70}


async def test_put_with_json_charset_parameter_is_accepted(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await client.put(
        url(kit_id),
        content=json.dumps({"answers": {"heightCm": 180}}),
        headers=json_headers(user, "application/json; charset=utf-8"),
    )
    assert response.status_code == 201, response.text


# --- 413 payload-too-large -------------------------------------------------------------------


async def test_body_over_the_limit_with_content_length_is_413(
    small_client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put_raw(small_client, kit_id, user, body_of_size(SMALL_LIMIT + 1))
    body = assert_problem(response, 413, "payload-too-large")
    assert str(SMALL_LIMIT) in body["detail"]
    await assert_nothing_saved(small_client, kit_id, user)


async def test_streamed_body_over_the_limit_is_413(
    small_client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await small_client.put(
        url(kit_id), content=chunks(body_of_size(4 * SMALL_LIMIT)), headers=json_headers(user)
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413, "payload-too-large")
    await assert_nothing_saved(small_client, kit_id, user)


async def test_streamed_patch_over_the_limit_is_413_and_changes_nothing(
    small_client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    saved = await seed(small_client, kit_id, user)
    response = await small_client.patch(
        url(kit_id),
        content=chunks(body_of_size(4 * SMALL_LIMIT)),
        headers=json_headers(user, "application/merge-patch+json"),
    )
    assert_problem(response, 413, "payload-too-large")
    await assert_unchanged(small_client, kit_id, user, saved)


async def test_body_exactly_at_the_limit_is_accepted(
    small_client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await put_raw(small_client, kit_id, user, body_of_size(SMALL_LIMIT))
    assert response.status_code == 201, response.text


async def test_streamed_body_under_the_limit_is_accepted(
    small_client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await small_client.put(
        url(kit_id), content=chunks(body_of_size(SMALL_LIMIT - 100)), headers=json_headers(user)
    )
    assert response.status_code == 201, response.text
    assert len(response.json()["answers"]["additionalNotes"]) > 1000


async def test_body_limit_is_configurable(
    client: httpx.AsyncClient, small_client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    body = body_of_size(SMALL_LIMIT + 1000)
    refused = await put_raw(small_client, kit_id, user, body)
    assert refused.status_code == 413
    accepted = await put_raw(client, kit_id, user, body)
    assert accepted.status_code == 201, accepted.text


# --- kit ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_kit_id",
    ["bad id", "K" * 65, "-starts-with-dash", "_starts-with-underscore", "dot.ted", "ümlaut"],
)
@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_bad_kit_id_is_422_naming_kit_id(
    client: httpx.AsyncClient, user: str, bad_kit_id: str, method: str
) -> None:
    path = url(bad_kit_id)
    response = await client.request(
        method, path, json={"answers": {"heightCm": 180}}, headers=auth(user)
    )
    body = assert_problem(response, 422, "validation-failed", instance=path)
    assert error_fields(body) == ["kitId"]


async def test_longest_valid_kit_id_is_accepted(client: httpx.AsyncClient, user: str) -> None:
    kit_id = "K" + uuid.uuid4().hex + "x" * 31
    assert len(kit_id) == 64
    response = await put_json(client, kit_id, user, {"answers": {"heightCm": 180}})
    assert response.status_code == 201, response.text


# --- framework errors and 500 ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/no-such-route", "/v1/kits/K1/health-informations", "/nothing/here"]
)
async def test_unknown_route_is_404_problem(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert_problem(response, 404, "not-found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/questionnaires/health-information", "GET"),
        ("POST", "/v1/kits/K1/health-information/history", "GET"),
        ("GET", "/v1/kits/K1/health-information/submit", "POST"),
    ],
)
async def test_wrong_method_is_405_problem_with_allow(
    client: httpx.AsyncClient, user: str, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path, headers=auth(user))
    assert_problem(response, 405, "method-not-allowed")
    assert allowed in response.headers["allow"]


def add_failing_route(application: FastAPI) -> None:
    async def explode() -> None:
        raise RuntimeError("SECRET-LEAK-42")

    application.add_api_route("/v1/test-only/explode", explode, methods=["GET"])


@pytest.fixture(scope="module")
async def failing_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    async with running_app(make_settings(), configure=add_failing_route) as application:
        yield application


async def test_unexpected_exception_is_500_problem_without_details(failing_app: FastAPI) -> None:
    async with server_like_client(failing_app) as http:
        response = await http.get("/v1/test-only/explode")
    body = assert_problem(response, 500, "internal-error")
    assert "SECRET-LEAK-42" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    assert not any("SECRET-LEAK-42" in value for value in response.headers.values())
    assert body["instance"] == "/v1/test-only/explode"


async def test_500_problem_carries_the_clients_request_id(failing_app: FastAPI) -> None:
    async with server_like_client(failing_app) as http:
        response = await http.get("/v1/test-only/explode", headers={"X-Request-ID": "req-500-a1"})
    body = assert_problem(response, 500, "internal-error")
    assert body["requestId"] == "req-500-a1"


async def test_app_keeps_serving_after_an_unexpected_exception(
    failing_app: FastAPI, kit_id: str, user: str
) -> None:
    async with server_like_client(failing_app) as http:
        assert (await http.get("/v1/test-only/explode")).status_code == 500
        response = await put_json(http, kit_id, user, {"answers": {"heightCm": 180}})
    assert response.status_code == 201, response.text


# --- request ids -----------------------------------------------------------------------------


async def test_sane_client_request_id_is_echoed(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await client.put(
        url(kit_id),
        json={"answers": {"heightCm": 180}},
        headers={**auth(user), "X-Request-ID": "client-req.42:abc_DEF-1"},
    )
    assert response.status_code == 201
    assert response.headers["x-request-id"] == "client-req.42:abc_DEF-1"


async def test_client_request_id_is_echoed_in_the_problem(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    response = await client.get(url(kit_id), headers={**auth(user), "X-Request-ID": "req-404-b2"})
    body = assert_problem(response, 404, "not-found")
    assert body["requestId"] == "req-404-b2"


@pytest.mark.parametrize(
    "offered",
    ["a" * 300, "has spaces in it", "semi;colon", "<script>", "ümlaut"],
    ids=["300-chars", "spaces", "semicolon", "markup", "non-ascii"],
)
async def test_insane_client_request_id_is_replaced_by_a_fresh_one(
    client: httpx.AsyncClient, user: str, offered: str
) -> None:
    headers = {**auth(user), "X-Request-ID": offered.encode()}
    first = await client.get("/v1/questionnaires/health-information", headers=headers)
    second = await client.get("/v1/questionnaires/health-information", headers=headers)
    assert first.status_code == 200
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert offered not in ids
    assert offered.encode().decode("latin-1") not in ids
    assert ids[0] != ids[1]
    assert all(SANE_REQUEST_ID.fullmatch(i) for i in ids)


async def test_insane_request_id_is_not_echoed_in_a_problem(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    offered = "x" * 300
    response = await client.get(url(kit_id), headers={**auth(user), "X-Request-ID": offered})
    body = assert_problem(response, 404, "not-found")
    assert body["requestId"] != offered
    assert offered not in response.text


async def test_every_response_gets_a_fresh_request_id_when_none_is_sent(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/health/live")
    second = await client.get("/v1/no-such-route")
    assert first.headers["x-request-id"]
    assert second.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


# --- pagination ------------------------------------------------------------------------------


def list_path(kit_id: str, which: str) -> str:
    if which == "history":
        return url(kit_id, "/history")
    return f"/v1/kits/{kit_id}/{which}"


@pytest.mark.parametrize("which", ["history", "members", "audit-events"])
@pytest.mark.parametrize("cursor", ["not-a-cursor", "!!!", "djI6MTA"])
async def test_invalid_cursor_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str, which: str, cursor: str
) -> None:
    await seed(client, kit_id, user)
    response = await client.get(
        list_path(kit_id, which), params={"cursor": cursor}, headers=auth(user, "admin")
    )
    body = assert_problem(response, 422, "validation-failed")
    assert error_fields(body) == ["cursor"]


@pytest.mark.parametrize("which", ["history", "members", "audit-events"])
@pytest.mark.parametrize("limit", ["0", "501", "-1", "ten"])
async def test_limit_out_of_range_is_422(
    client: httpx.AsyncClient, kit_id: str, user: str, which: str, limit: str
) -> None:
    await seed(client, kit_id, user)
    response = await client.get(
        list_path(kit_id, which), params={"limit": limit}, headers=auth(user, "admin")
    )
    body = assert_problem(response, 422, "validation-failed")
    assert error_fields(body) == ["limit"]


@pytest.mark.parametrize("limit", ["1", "500"])
async def test_limit_at_the_bounds_is_accepted(
    client: httpx.AsyncClient, kit_id: str, user: str, limit: str
) -> None:
    await seed(client, kit_id, user)
    response = await client.get(
        url(kit_id, "/history"), params={"limit": limit}, headers=auth(user)
    )
    assert response.status_code == 200
    assert [i["version"] for i in response.json()["items"]] == [1]


# --- 401 unauthenticated ---------------------------------------------------------------------


async def test_expired_token_is_401_with_www_authenticate(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    expired = mint_token(
        TEST_SECRET.encode(), sub=user, ttl_seconds=60, now=datetime.now(UTC) - timedelta(hours=1)
    )
    response = await client.get(url(kit_id), headers={"Authorization": f"Bearer {expired}"})
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_write_with_expired_token_is_401_and_saves_nothing(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    expired = mint_token(
        TEST_SECRET.encode(), sub=user, ttl_seconds=60, now=datetime.now(UTC) - timedelta(hours=1)
    )
    response = await client.put(
        url(kit_id),
        json={"answers": {"heightCm": 180}},
        headers={"Authorization": f"Bearer {expired}"},
    )
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")
    await assert_nothing_saved(client, kit_id, user)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt"],
    ids=["missing", "empty-bearer", "basic", "garbage"],
)
async def test_missing_or_bad_token_is_401_with_www_authenticate(
    client: httpx.AsyncClient, kit_id: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get(url(kit_id), headers=headers)
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_token_signed_with_another_secret_is_401(
    client: httpx.AsyncClient, kit_id: str, user: str
) -> None:
    forged = mint_token(b"another-secret-that-is-long-enough-0123456789", sub=user)
    response = await client.get(url(kit_id), headers={"Authorization": f"Bearer {forged}"})
    assert_problem(response, 401, "unauthenticated")
    assert forged not in response.text
