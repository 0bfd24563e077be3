"""Errors in one place: domain errors → RFC 9457 problem details (HTTP) or error messages (WS).

Every error a client can see, including the framework's own 404/405/422 and any 500, leaves
through here as ``application/problem+json`` with a stable ``code`` and the ``requestId``.
A 500 says only that something failed and which request it was.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope

from healthinfo.api.headers import error_headers
from healthinfo.common.uow import is_database_unavailable, unavailable_from
from healthinfo.errors import (
    AlreadySubmitted,
    DeliveryNotDead,
    DomainError,
    EditConflict,
    ExportInProgress,
    FieldError,
    Forbidden,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    KitAlreadyClaimed,
    MalformedRequest,
    NotFound,
    NotSubmitted,
    PayloadTooLarge,
    PreconditionRequired,
    QuestionnaireMismatch,
    QuestionnaireVersionExists,
    RateLimited,
    RoomFull,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
    ValidationFailed,
    VersionConflict,
)
from healthinfo.infra.logging import request_log_fields

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger(__name__)

STATUS: dict[type[DomainError], int] = {
    MalformedRequest: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    AlreadySubmitted: 409,
    EditConflict: 409,
    KitAlreadyClaimed: 409,
    QuestionnaireMismatch: 409,
    QuestionnaireVersionExists: 409,
    NotSubmitted: 409,
    IdempotencyKeyInUse: 409,
    IdempotencyKeyReused: 422,
    DeliveryNotDead: 409,
    VersionConflict: 412,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    ValidationFailed: 422,
    PreconditionRequired: 428,
    RoomFull: 429,
    RateLimited: 429,
    ExportInProgress: 429,
    Unavailable: 503,
}

# The framework's own errors (routing, body parsing), by status: the contract's code where it
# has one, so every code a client can see has its page under /problems/ (api/problem_pages.py).
_FRAMEWORK_ERRORS: dict[int, tuple[str, str]] = {
    400: (MalformedRequest.code, MalformedRequest.title),
    401: (Unauthenticated.code, Unauthenticated.title),
    404: (NotFound.code, NotFound.title),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: (PayloadTooLarge.code, PayloadTooLarge.title),
    415: (UnsupportedMediaType.code, UnsupportedMediaType.title),
}
ResponseRewrite = Callable[[Scope, Response], Response]
"""A last rewrite of the 500 handler's response, which no middleware sees (the FHIR base's
``OperationOutcome``, fhir/outcome.py)."""
HTTP_ERROR = ("http-error", "HTTP error")  # any other status the framework raises
INTERNAL_ERROR = "internal-error"


def emitted_codes() -> frozenset[str]:
    """Every problem ``code`` this service can send: its domain errors and the framework's."""
    domain = {cls.code for cls in STATUS}
    framework = {code for code, _ in _FRAMEWORK_ERRORS.values()}
    return frozenset(domain | framework | {HTTP_ERROR[0], INTERNAL_ERROR})


def status_for(error_type: type[DomainError]) -> int:
    for cls in error_type.__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def status_of(error: DomainError) -> int:
    return status_for(type(error))


def close_code(error: DomainError) -> int:
    """The WebSocket close code for a refused connection: 4000 + the HTTP status (4404, 4429…)."""
    return 4000 + status_of(error)


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str | None,
    request_id: str | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "code": code,
        "requestId": request_id,
    }
    body.update(extra or {})
    return body


def domain_problem(
    error: DomainError, *, instance: str | None, request_id: str | None
) -> dict[str, Any]:
    return problem_body(
        status=status_of(error),
        code=error.code,
        title=error.title,
        detail=error.detail,
        instance=instance,
        request_id=request_id,
        extra=error.extra(),
    )


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        content=json.dumps(body, separators=(",", ":")),
        status_code=int(body["status"]),
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def request_id_of(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


def problem_for(request: Request, error: DomainError) -> Response:
    """The problem response for a domain error, as the exception handlers send it."""
    return _response_for(request, error)


def _response_for(request: Request, error: DomainError) -> Response:
    body = domain_problem(error, instance=request.url.path, request_id=request_id_of(request))
    headers = {"X-Request-ID": body["requestId"]} if body["requestId"] else {}
    if isinstance(error, RateLimited | RoomFull | ExportInProgress):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="healthinfo"'
    if isinstance(error, VersionConflict | EditConflict) and error.current_version is not None:
        headers["ETag"] = f'"{error.current_version}"'
    return problem_response(body, headers)


async def _on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return _response_for(request, exc)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own 422s: a body that is not JSON or not an object is 400, the rest 422."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(_is_malformed(e) for e in errors):
        return _response_for(
            request, MalformedRequest("The body is not a JSON object as this route expects.")
        )
    fields = [FieldError(_field_name(e["loc"]), str(e["msg"])) for e in errors]
    return _response_for(request, ValidationFailed(fields))


def _is_malformed(error: Any) -> bool:
    loc = tuple(error.get("loc", ()))
    return error.get("type") == "json_invalid" or (
        loc == ("body",) and error.get("type") in {"model_attributes_type", "dict_type", "missing"}
    )


def _field_name(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "path", "query", "header")]
    return ".".join(parts) or "body"


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code, title = _FRAMEWORK_ERRORS.get(exc.status_code, HTTP_ERROR)
    detail = "No such route." if exc.status_code == 404 else str(exc.detail)
    body = problem_body(
        status=exc.status_code,
        code=code,
        title=title,
        detail=detail,
        instance=request.url.path,
        request_id=request_id_of(request),
    )
    headers = dict(exc.headers or {})
    if body["requestId"]:
        headers["X-Request-ID"] = body["requestId"]
    return problem_response(body, headers)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    if is_database_unavailable(exc):  # raised outside a unit of work (e.g. the key store)
        response = _response_for(request, unavailable_from(exc))
        response.headers.update(error_headers(request.scope))
        return _rewritten(request, response)
    # The frames, never the message (infra/logging.py): a message can quote a stored value.
    logger.error(
        "request.unhandled_exception",
        exc_info=exc,
        extra={"exc_type": type(exc).__name__, **request_log_fields(request.scope)},
    )
    body = problem_body(
        status=500,
        code=INTERNAL_ERROR,
        title="Internal server error",
        detail="Something failed on our side. Quote the request id when you report it.",
        instance=request.url.path,
        request_id=request_id_of(request),
    )
    # Sent by Starlette's outermost middleware, past every one of ours: the headers they add.
    headers = error_headers(request.scope)
    if body["requestId"]:
        headers["X-Request-ID"] = body["requestId"]
    return _rewritten(request, problem_response(body, headers))


def _rewritten(request: Request, response: Response) -> Response:
    rewrite: ResponseRewrite | None = getattr(request.app.state, "rewrite_unexpected", None)
    return rewrite(request.scope, response) if rewrite is not None else response


def install_problem_handlers(
    app: FastAPI, *, rewrite_unexpected: ResponseRewrite | None = None
) -> None:
    app.state.rewrite_unexpected = rewrite_unexpected
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
