"""``GET /problems/{code}``: the page each problem ``type`` URI names (RFC 9457 §3.1.1).

Every problem this service sends has ``"type": "/problems/<code>"``; RFC 9457 asks that a type
URI, when dereferenced, give human-readable documentation of the problem. One short static HTML
page per code: its title and status, when it happens, and what a client should do. The pages
hold nothing from the request, so they are public (no token) and cacheable. A code with no page
is a 404 problem (a string that cannot be a code at all, a 422). The tests check that every code
the service can send (``api.problems.emitted_codes``) and every code of the contract has one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import APIRouter, Path
from starlette.responses import HTMLResponse

from healthinfo.api.headers import PAGE_CSP
from healthinfo.api.openapi import problems
from healthinfo.api.problems import HTTP_ERROR, INTERNAL_ERROR, status_for
from healthinfo.errors import (
    AlreadySubmitted,
    DeliveryNotDead,
    DomainError,
    EditConflict,
    ExportInProgress,
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

PATH: Final = "/problems/{code}"
CACHE_CONTROL: Final = "public, max-age=86400"
CODE_PATTERN: Final = r"^[a-z][a-z0-9-]{0,63}$"  # what a code looks like; others are 422


@dataclass(frozen=True, slots=True)
class ProblemPage:
    title: str
    status: int | None  # None: the status varies (the framework's other errors)
    when: str
    what_to_do: str


def _domain(error: type[DomainError], when: str, what_to_do: str) -> tuple[str, ProblemPage]:
    """A domain error's page, with the title and status its problems carry."""
    return error.code, ProblemPage(error.title, status_for(error), when, what_to_do)


PAGES: Final[dict[str, ProblemPage]] = dict(
    [
        _domain(
            MalformedRequest,
            "The body is not valid JSON, or not a JSON object where the route expects one.",
            "Fix the request body; sending it again unchanged fails the same way.",
        ),
        _domain(
            Unauthenticated,
            "No bearer token, a malformed Authorization header, a bad signature, an expired "
            "token, or a wrong issuer or audience.",
            "Get a fresh token and send it as Authorization: Bearer <token> (the live routes "
            "also take ?access_token=).",
        ),
        _domain(
            Forbidden,
            "The caller has access to the kit, but its role does not allow this action (a "
            "viewer writing, an editor managing members, a non-admin on admin routes).",
            "Do not retry with the same token; ask the kit's owner or an admin for the role.",
        ),
        _domain(
            NotFound,
            "No such resource or route, or the caller has no access to the kit: the two look "
            "the same on purpose, so kit ids cannot be probed.",
            "Check the kit id and the token's user; claim the kit first if it is new.",
        ),
        _domain(
            AlreadySubmitted,
            "A write to health information that was submitted; submitted data is read-only on "
            "every channel.",
            "Do not retry. Corrections go through an amendment by an admin.",
        ),
        _domain(
            EditConflict,
            "A write with baseVersion touched questions that someone else changed since that "
            "version; the body lists each one in conflicts with its currentVersion.",
            "Reload the health information, merge the listed questions, and write again with "
            "the current version as baseVersion.",
        ),
        _domain(
            NotSubmitted,
            "An amendment of health information that is still in progress.",
            "Edit the data with PUT or PATCH instead; amendments are for submitted data.",
        ),
        _domain(
            KitAlreadyClaimed,
            "Claiming a kit that another user owns.",
            "Check the kit id; the owner can add you as a member instead.",
        ),
        _domain(
            QuestionnaireMismatch,
            "A write or a claim names another questionnaire than the one the kit is bound to "
            "(the problem's detail names the bound id and version).",
            "Send the write without `questionnaire`, or move the kit with POST "
            "/v1/kits/{kitId}/health-information/questionnaire.",
        ),
        _domain(
            QuestionnaireVersionExists,
            "Publishing other content under a questionnaire (id, version) that is already "
            "published: a published version never changes.",
            "Publish the new content under a new version; the same content again is a 200.",
        ),
        _domain(
            IdempotencyKeyInUse,
            "A request with the same Idempotency-Key is still being processed.",
            "Retry the same request with the same key shortly; you will get its response.",
        ),
        _domain(
            IdempotencyKeyReused,
            "The Idempotency-Key was already used for a different request (method, route, body "
            "or preconditions differ).",
            "Use a new key for a new request; reuse a key only to retry the very same request.",
        ),
        _domain(
            DeliveryNotDead,
            "Retrying a forwarding delivery that is not dead-lettered (it is pending or "
            "delivered); the body names its state.",
            "Nothing to do: a pending delivery is already being retried, a delivered one is done.",
        ),
        _domain(
            VersionConflict,
            "If-Match does not match the current version (or nothing is saved yet); nothing "
            "changed. The body has currentVersion and the response the current ETag.",
            "Read the current health information, reapply your change, and send it with the "
            "new ETag in If-Match.",
        ),
        _domain(
            PreconditionRequired,
            "This deployment runs in strict mode and the write carried neither If-Match nor "
            "baseVersion.",
            "Read the current version first and send If-Match (or baseVersion) with the write.",
        ),
        _domain(
            ValidationFailed,
            "Answers that break the questionnaire, unknown question ids, a bad kit id or "
            "parameter, or required answers missing on submit; errors lists each field.",
            "Fix each listed field; sending the request again unchanged fails the same way.",
        ),
        _domain(
            PayloadTooLarge,
            "The body is larger than the deployment's limit.",
            "Send less: split the answers over several PATCH requests.",
        ),
        _domain(
            UnsupportedMediaType,
            "A write body whose Content-Type is not application/json (PATCH also takes "
            "application/merge-patch+json; FHIR routes application/fhir+json).",
            "Send the body with a Content-Type the route accepts.",
        ),
        _domain(
            RoomFull,
            "A Server-Sent Events or WebSocket connection beyond the kit's room limit.",
            "Close connections you no longer use, or retry later.",
        ),
        _domain(
            RateLimited,
            "Too many requests from this user or address in the current window.",
            "Wait the number of seconds in Retry-After, then retry; slow down.",
        ),
        _domain(
            ExportInProgress,
            "A FHIR Bulk Data export kick-off while your previous export is still running.",
            "Poll the earlier export's status URL until it completes, or DELETE it, then retry.",
        ),
        _domain(
            Unavailable,
            "The database cannot be reached; nothing was changed.",
            "Retry with back-off; writes are safe to retry with an Idempotency-Key.",
        ),
        (
            "method-not-allowed",
            ProblemPage(
                "Method not allowed",
                405,
                "The route exists but not with this method; the Allow header lists the "
                "methods it takes.",
                "Use one of the methods in Allow (OPTIONS on the path lists them too).",
            ),
        ),
        (
            "not-acceptable",
            ProblemPage(
                "Not acceptable",
                406,
                "The Accept header names no media type this route can send.",
                "Accept application/json (or application/fhir+json where FHIR is offered).",
            ),
        ),
        (
            INTERNAL_ERROR,
            ProblemPage(
                "Internal server error",
                500,
                "Something failed on the service's side; the body holds only the request id.",
                "Retry later; if it persists, report the requestId to the operators.",
            ),
        ),
        (
            HTTP_ERROR[0],
            ProblemPage(
                HTTP_ERROR[1],
                None,
                "An HTTP error from the web framework that none of the other codes describe; "
                "the status tells which.",
                "Act on the status; report the requestId if the request looks right to you.",
            ),
        ),
    ]
)

router = APIRouter(tags=["problems"])


@router.get(
    PATH,
    summary="What a problem type means",
    description=(
        "The page a problem's `type` (`/problems/<code>`) names: when the problem happens and "
        "what a client should do. No token needed."
    ),
    response_class=HTMLResponse,
    responses={
        200: {"description": "A short HTML page.", "content": {"text/html": {}}},
        **problems(404, 422),
    },
)
async def problem_page(
    code: Annotated[
        str,
        Path(
            description="The problem's `code`.",
            examples=["version-conflict"],
            pattern=CODE_PATTERN,
        ),
    ],
) -> HTMLResponse:
    page = PAGES.get(code)
    if page is None:
        raise NotFound("There is no problem type with this code.")
    return HTMLResponse(
        render(code, page),
        headers={"Cache-Control": CACHE_CONTROL, "Content-Security-Policy": PAGE_CSP},
    )


def render(code: str, page: ProblemPage) -> str:
    title = html.escape(page.title)
    status = f"HTTP {page.status}" if page.status is not None else "HTTP 4xx or 5xx"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} ({html.escape(code)})</title>
<style>body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }}</style>
</head>
<body>
<h1>{title}</h1>
<p><code>{html.escape(code)}</code> &middot; {status}</p>
<h2>When it happens</h2>
<p>{html.escape(page.when)}</p>
<h2>What to do</h2>
<p>{html.escape(page.what_to_do)}</p>
<p>Every problem body also carries <code>requestId</code>: quote it when you ask for help.</p>
</body>
</html>
"""
