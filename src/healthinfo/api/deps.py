"""Request-scoped plumbing for the REST adapter: services, the caller, bodies, paging.

Nothing here decides a business rule: authentication turns a token into an ``Actor``; every
access decision is the services' (``kits.service`` / ``auth.access``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request

from healthinfo.auth.actor import Actor
from healthinfo.common.context import Channel, RequestContext
from healthinfo.common.pagination import DEFAULT_LIMIT, MAX_LIMIT
from healthinfo.errors import MalformedRequest, Unauthenticated, UnsupportedMediaType
from healthinfo.services import Services

KIT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
CURSOR_PATTERN = r"^[A-Za-z0-9_=-]+$"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
MAX_JSON_DEPTH = 32

KitId = Annotated[str, Path(alias="kitId", pattern=KIT_ID_PATTERN, description="The kit's id.")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")]
# A cursor is base64url (common/pagination.py): anything else, control characters included, is 422.
Cursor = Annotated[
    str | None,
    Query(max_length=200, pattern=CURSOR_PATTERN, description="From a previous nextCursor."),
]


IDENTITY_STATE = "identity"  # in scope["state"]: the request's verified caller, or why none


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]

# The dependencies below take the request and nothing else, and share their work through the
# request's state, instead of depending on one another: FastAPI (0.16x) solves every node of
# a dependency tree on every request, cached or not (the cache saves the call, not the
# solving), so a flat set of dependencies is less framework per request (issue #16).


async def identify(request: Request) -> Actor | Unauthenticated:
    """The verified caller, or why there is none; verified once per request.

    Its own step (the rate limiter asks first) so that the limiter can count a request by
    address and by verified user in one call *before* the route refuses a bad token: floods
    of bad tokens are counted against their address all the same.
    """
    state = request.scope.setdefault("state", {})
    found = state.get(IDENTITY_STATE)
    if isinstance(found, Actor | Unauthenticated):
        return found
    try:
        identity: Actor | Unauthenticated = await _verify_bearer(
            request, request.app.state.services
        )
    except Unauthenticated as exc:
        identity = exc
    state[IDENTITY_STATE] = identity
    return identity


IdentityDep = Annotated[Actor | Unauthenticated, Depends(identify)]


async def authenticate(request: Request) -> Actor:
    identity = await identify(request)
    if isinstance(identity, Unauthenticated):
        raise identity
    return identity


ActorDep = Annotated[Actor, Depends(authenticate)]


async def _verify_bearer(request: Request, svc: Services) -> Actor:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("A bearer token is required (Authorization: Bearer …).")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("The Authorization header must be 'Bearer <token>'.")
    return await svc.tokens.verify(token.strip())


async def rest_context(request: Request) -> RequestContext:
    actor = await authenticate(request)
    return RequestContext(
        actor=actor,
        channel=Channel.REST,
        request_id=request.scope.get("state", {}).get("request_id"),
        client_address=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


ContextDep = Annotated[RequestContext, Depends(rest_context)]


async def read_json_object(request: Request, *, media_types: tuple[str, ...] = (JSON,)) -> Any:
    """Read and decode a JSON object body: 415 for other media types, 400 for non-JSON."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in media_types:
        raise UnsupportedMediaType(f"Send the body as {' or '.join(media_types)}.")
    raw = await request.body()
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise MalformedRequest("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise MalformedRequest("The body must be a JSON object.")
    if _depth(data) > MAX_JSON_DEPTH:
        raise MalformedRequest("The body nests too deeply.")
    return data


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


async def page_limit(limit: Limit = DEFAULT_LIMIT) -> int:
    return limit
