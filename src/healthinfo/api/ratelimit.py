"""The rate-limit dependency for REST routers, and the middleware that reports the limits.

Each request is counted against its client address's limit and, when its token verified,
its user's, in one call to the limiter (one Redis round trip). The user limit is keyed by the
verified ``sub``, so nobody can spend another user's budget with a forged token; a request
whose token fails is still counted against its address before it is refused with 401, so
floods of bad tokens meet the address limit. The tighter limit is reported in ``RateLimit-*``
headers.
"""

from __future__ import annotations

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from healthinfo.api.deps import IdentityDep, ServicesDep
from healthinfo.auth.actor import Actor
from healthinfo.errors import RateLimited
from healthinfo.infra.ratelimit import Decision, RouteClass

STATE_KEY = "rate_limit"
STREAM_SUFFIXES = ("/events", "/ws")


def route_class(request: Request) -> RouteClass:
    if request.url.path.endswith(STREAM_SUFFIXES):
        return RouteClass.STREAM
    return RouteClass.READ if request.method in ("GET", "HEAD") else RouteClass.WRITE


async def limit_requests(request: Request, identity: IdentityDep, svc: ServicesDep) -> None:
    if svc.rate_limiter is not None:
        decision = await svc.rate_limiter.check(
            route_class(request),
            user_id=identity.user_id if isinstance(identity, Actor) else None,
            address=request.client.host if request.client else "unknown",
        )
        _apply(request, decision)


def _apply(request: Request, decision: Decision) -> None:
    request.scope.setdefault("state", {})[STATE_KEY] = decision
    if not decision.allowed:
        raise RateLimited(decision.reset_after)


RATE_LIMITS = [Depends(limit_requests)]


class RateLimitHeadersMiddleware:
    """Adds ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` when counted."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_limits(message: Message) -> None:
            decision = scope.get("state", {}).get(STATE_KEY)
            if message["type"] == "http.response.start" and isinstance(decision, Decision):
                message["headers"] = [
                    *message.get("headers", []),
                    (b"ratelimit-limit", str(decision.limit).encode()),
                    (b"ratelimit-remaining", str(decision.remaining).encode()),
                    (b"ratelimit-reset", str(decision.reset_after).encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_limits)
