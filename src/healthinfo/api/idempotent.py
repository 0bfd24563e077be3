"""Run a REST write under the client's ``Idempotency-Key`` (PUT, PATCH and POST).

Same key and same request: the stored response again, with ``Idempotent-Replayed: true``,
but a stored success only to a caller who may still read the kit (access is decided again
before the replay: a member removed since gets 404, not the answers they once wrote).
Same key, different request: 422. While the first is still running: 409. A refusal (4xx) is
stored and replayed like a success; a 503 or a crash releases the key so a retry runs anew.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request
from starlette.responses import Response

from healthinfo.api.problems import problem_for
from healthinfo.auth.access import Permission
from healthinfo.common.context import RequestContext
from healthinfo.common.identifiers import is_printable
from healthinfo.common.uow import UnitOfWork
from healthinfo.errors import DomainError, FieldError, Unavailable, ValidationFailed
from healthinfo.idempotency.store import StoredResponse
from healthinfo.services import Services

T = TypeVar("T")
HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"
KEPT_HEADERS = ("content-type", "etag", "content-disposition")
MAX_KEY_LENGTH = 255


async def run_write(
    request: Request,
    ctx: RequestContext,
    svc: Services,
    *,
    action: str,
    kit_id: str,
    operation: Callable[[UnitOfWork], Awaitable[T]],
    render: Callable[[T], Response],
) -> Response:
    key = request.headers.get(HEADER)
    if key is None or svc.idempotency is None:
        result = await svc.writes.run(ctx, action=action, kit_id=kit_id, operation=operation)
        return render(result)
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise ValidationFailed([FieldError("Idempotency-Key", "must be 1 to 255 characters")])
    if not is_printable(key):
        raise ValidationFailed([FieldError("Idempotency-Key", "must not hold control characters")])
    store, user = svc.idempotency, ctx.actor.user_id
    replay = await store.begin(user, key, await fingerprint(request), kit_id=kit_id)
    if replay is not None:
        await _still_allowed(svc, ctx, kit_id, replay)
        return replayed(replay)

    async def operation_and_response(uow: UnitOfWork) -> Response:
        response = render(await operation(uow))
        await store.complete(uow, user, key, stored(response), kit_id=kit_id)
        return response

    try:
        return await svc.writes.run(
            ctx, action=action, kit_id=kit_id, operation=operation_and_response
        )
    except Unavailable:
        await store.release(user, key)
        raise
    except DomainError as exc:
        await store.complete_alone(user, key, stored(problem_for(request, exc)), kit_id=kit_id)
        raise
    except BaseException:
        await store.release(user, key)
        raise


async def _still_allowed(
    svc: Services, ctx: RequestContext, kit_id: str, replay: StoredResponse
) -> None:
    """A stored success shows the kit as it was: replay it only to whoever may read it now.

    A stored refusal discloses nothing of the kit and is replayed as it is (the contract's
    "a refusal is replayed like a success").
    """
    if replay.status >= 400:
        return
    async with svc.uows.read() as uow:
        await svc.kits.authorize(uow, ctx.actor, kit_id, Permission.READ)


async def fingerprint(request: Request) -> str:
    """What makes two requests "the same": method, route (any API version), preconditions, body."""
    path = request.url.path.removeprefix("/v1")
    digest = hashlib.sha256()
    for part in (
        request.method,
        path,
        request.headers.get("if-match", ""),
        request.headers.get("if-none-match", ""),
    ):
        digest.update(part.encode() + b"\0")
    digest.update(await request.body())
    return digest.hexdigest()


def stored(response: Response) -> StoredResponse:
    headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
    return StoredResponse(response.status_code, headers, bytes(response.body).decode())


def replayed(response: StoredResponse) -> Response:
    return Response(
        content=response.body,
        status_code=response.status,
        headers={**response.headers, REPLAYED: "true"},
    )
