"""Errors under the FHIR base as ``OperationOutcome`` (FHIR R4 operationoutcome.html).

The rest of the API answers errors with RFC 9457 problems (api/problems.py); a FHIR client
reads an ``OperationOutcome`` instead. Rather than a second error path, every problem a
response under ``/v1/fhir`` carries is rewritten on its way out, by one small ASGI middleware:
so the status, the headers (``Retry-After``, ``WWW-Authenticate``, ``Allow``) and the problem
``code`` are exactly those the rest of the API gives, for domain errors, the framework's own
404/405/422, the body limit's 413, the rate limiter's 429, and (through
:func:`rewrite_unexpected`, since the 500 handler runs outside every middleware) a 500.

``issue[0]`` is the problem: ``details.coding`` holds its ``code`` (system
:data:`PROBLEM_SYSTEM`) and title, ``details.text`` its detail, ``diagnostics`` the request
id. A validation failure adds one issue per field error, with the field as ``expression``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthinfo.api.methods import route_path
from healthinfo.fhir.mapping import DEFAULT_BASE_URL

FHIR_PREFIX: Final = "/v1/fhir"
FHIR_CONTENT_TYPE: Final = "application/fhir+json; fhirVersion=4.0"
PROBLEM_SYSTEM: Final = f"{DEFAULT_BASE_URL}/problem-code"
"""The code system of problem codes in ``issue[0].details.coding`` (the API's stable codes)."""

# R4 IssueType (valueset-issue-type) for each HTTP status our problems use.
ISSUE_TYPE: Final[Mapping[int, str]] = {
    400: "structure",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    428: "business-rule",
    429: "throttled",
    431: "too-costly",
    503: "transient",
}
_PROBLEM_JSON: Final = b"application/problem+json"


def is_fhir_path(path: str) -> bool:
    return path == FHIR_PREFIX or path.startswith(FHIR_PREFIX + "/")


def operation_outcome(problem: Mapping[str, Any]) -> dict[str, Any]:
    """The ``OperationOutcome`` saying what ``problem`` (an RFC 9457 body of ours) says."""
    status = int(problem.get("status", 500))
    code = str(problem.get("code", "internal-error"))
    coding: dict[str, Any] = {"system": PROBLEM_SYSTEM, "code": code}
    if problem.get("title"):
        coding["display"] = str(problem["title"])
    details: dict[str, Any] = {"coding": [coding]}
    if problem.get("detail"):
        details["text"] = str(problem["detail"])
    first: dict[str, Any] = {
        "severity": "error" if status < 500 else "fatal",
        "code": ISSUE_TYPE.get(status, "exception" if status >= 500 else "processing"),
        "details": details,
    }
    diagnostics = _diagnostics(problem)
    if diagnostics:
        first["diagnostics"] = diagnostics
    issues = [first]
    for error in problem.get("errors") or ():
        if isinstance(error, Mapping) and error.get("field"):
            issues.append(
                {
                    "severity": "error",
                    "code": "invalid" if status == 422 else first["code"],
                    "details": {"text": str(error.get("message") or "is invalid")},
                    "expression": [str(error["field"])],
                }
            )
    return {"resourceType": "OperationOutcome", "issue": issues}


def _diagnostics(problem: Mapping[str, Any]) -> str:
    parts = []
    if problem.get("requestId"):
        parts.append(f"requestId {problem['requestId']}")
    if problem.get("currentVersion") is not None:
        parts.append(f"currentVersion {problem['currentVersion']}")
    if problem.get("retryAfter") is not None:
        parts.append(f"retryAfter {problem['retryAfter']}")
    return "; ".join(parts)


def outcome_body(problem_body: bytes) -> bytes:
    try:
        problem = json.loads(problem_body)
    except ValueError:
        problem = {"status": 500}
    if not isinstance(problem, dict):
        problem = {"status": 500}
    return json.dumps(operation_outcome(problem), separators=(",", ":")).encode()


def fhir_error_headers(
    headers: list[tuple[bytes, bytes]], length: int
) -> list[tuple[bytes, bytes]]:
    """The problem's headers, typed as FHIR, with FHIR's weak ETag for a version conflict."""
    kept: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in (b"content-type", b"content-length"):
            continue
        if lowered == b"etag" and not value.startswith(b"W/"):
            value = b"W/" + value
        kept.append((name, value))
    return [
        *kept,
        (b"content-type", FHIR_CONTENT_TYPE.encode()),
        (b"content-length", str(length).encode()),
    ]


def rewrite_unexpected(scope: Scope, response: Response) -> Response:
    """For the 500 handler (outside every middleware): the same rewrite, on a Response."""
    if not is_fhir_path(route_path(scope)):
        return response
    if not response.media_type or not response.media_type.startswith("application/problem"):
        return response
    body = outcome_body(bytes(response.body))
    headers = [
        (name, value) for name, value in response.raw_headers if name.lower() != b"content-length"
    ]
    rewritten = Response(content=body, status_code=response.status_code)
    rewritten.raw_headers = fhir_error_headers(headers, len(body))
    return rewritten


class OperationOutcomeMiddleware:
    """Under ``/v1/fhir``: every ``application/problem+json`` response leaves as an
    ``OperationOutcome``. Other responses, and every other path, pass through untouched (only
    problem bodies, which are small, are ever buffered)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_fhir_path(route_path(scope)):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def send_outcome(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and _is_problem(message):
                held = message
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = outcome_body(b"".join(chunks))
            start = dict(held)
            start["headers"] = fhir_error_headers(list(held.get("headers", [])), len(body))
            held = None
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, send_outcome)


def _is_problem(message: Message) -> bool:
    return any(
        name.lower() == b"content-type" and value.lower().startswith(_PROBLEM_JSON)
        for name, value in message.get("headers", [])
    )
