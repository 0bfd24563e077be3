"""Errors on the FHIR routes as ``OperationOutcome`` resources (FHIR R4 operationoutcome.html).

The same status and problem ``code`` as the RFC 9457 problem the rest of the API sends (the code
in ``issue[0].details.coding``), so a client can switch on either. Deliberately small and
standalone: the FHIR base's renderer and this one are meant to become one function.
"""

from __future__ import annotations

import json
from typing import Any, Final

from starlette.responses import Response

from healthinfo.api.problems import status_of
from healthinfo.errors import DomainError, Unauthenticated

FHIR_CONTENT_TYPE: Final = "application/fhir+json; fhirVersion=4.0"
PROBLEM_CODE_SYSTEM: Final = "urn:healthinfo:problem"
# FHIR's IssueType for each HTTP status we send (http://hl7.org/fhir/valueset-issue-type.html).
_ISSUE_TYPES: Final = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    409: "conflict",
    422: "processing",
    429: "throttled",
    500: "exception",
    503: "transient",
}


def operation_outcome(status: int, code: str, detail: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": _ISSUE_TYPES.get(status, "processing"),
                "details": {
                    "coding": [{"system": PROBLEM_CODE_SYSTEM, "code": code}],
                    "text": detail,
                },
            }
        ],
    }


def outcome_response(error: DomainError) -> Response:
    """The OperationOutcome for a domain error, with the headers its problem would carry."""
    status = status_of(error)
    headers: dict[str, str] = {}
    retry_after = getattr(error, "retry_after", None)  # RateLimited, ExportInProgress
    if isinstance(retry_after, int):
        headers["Retry-After"] = str(retry_after)
    if isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="healthinfo"'
    return Response(
        content=json.dumps(operation_outcome(status, error.code, error.detail)),
        status_code=status,
        media_type=FHIR_CONTENT_TYPE,
        headers=headers,
    )
