"""OpenAPI helpers: document problem responses and bodies we parse ourselves."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from healthinfo.api.problems import PROBLEM_JSON

_DESCRIPTIONS = {
    400: "Malformed request (`malformed-request`).",
    401: "No token, bad signature or expired token (`unauthenticated`).",
    403: "The caller's role does not allow this action (`forbidden`).",
    404: "No such resource, or no access to the kit (`not-found`).",
    409: (
        "Conflict (`already-submitted`, `edit-conflict`, `kit-already-claimed`, "
        "`delivery-not-dead`)."
    ),
    412: "If-Match does not match the current version (`version-conflict`).",
    413: "Body over the configured limit (`payload-too-large`).",
    415: "Unsupported media type (`unsupported-media-type`).",
    422: "Validation failed (`validation-failed`).",
    428: "Strict mode: If-Match or baseVersion required (`precondition-required`).",
    429: "Rate limited (`rate-limited`), or a live route's room is full (`room-full`).",
    503: "Database unavailable (`unavailable`).",
}

READ_ERRORS = (401, 404, 422, 503)
WRITE_ERRORS = (400, 401, 403, 404, 409, 412, 413, 415, 422, 428, 503)


class Problem(BaseModel):
    """RFC 9457 problem details with the contract's stable ``code``."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str
    requestId: str | None = None
    errors: list[dict[str, str]] | None = None
    conflicts: list[dict[str, Any]] | None = None
    currentVersion: int | None = None
    retryAfter: int | None = None  # rate-limited, room-full: seconds, as in Retry-After


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "description": _DESCRIPTIONS.get(status, "Error."),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def ok(
    model: type[BaseModel], description: str, status: int = 200
) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": description, "model": model}}


def json_body(
    model: type[BaseModel], *media_types: str, examples: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A requestBody for routes that read the body themselves (to map errors exactly).

    ``examples`` (OpenAPI Example Objects by name) are what "Try it out" in ``/docs`` offers.
    """
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    media: dict[str, Any] = {"schema": ref}
    if examples:
        media["examples"] = examples
    return {
        "requestBody": {
            "required": True,
            "content": {name: dict(media) for name in media_types or ("application/json",)},
        }
    }
