"""The rate-limit dependency for REST routers; the edge middleware reports the limits.

Each request is counted against its client address's limit and, when its token verified,
its user's, in one call to the limiter (one Redis round trip). The user limit is keyed by the
verified ``sub``, so nobody can spend another user's budget with a forged token; a request
whose token fails is still counted against its address before it is refused with 401, so
floods of bad tokens meet the address limit. The tighter limit is reported in ``RateLimit-*``
headers (``api/edge.py`` adds them from the decision left in the scope's state).
"""

from __future__ import annotations

from fastapi import Depends, Request

from healthinfo.api.deps import identify, services
from healthinfo.auth.actor import Actor
from healthinfo.errors import RateLimited
from healthinfo.infra.ratelimit import Decision, RouteClass

STATE_KEY = "rate_limit"
STREAM_SUFFIXES = ("/events", "/ws")


def route_class(request: Request) -> RouteClass:
    if str(request.scope["path"]).endswith(STREAM_SUFFIXES):
        return RouteClass.STREAM
    return RouteClass.READ if request.method in ("GET", "HEAD") else RouteClass.WRITE


async def limit_requests(request: Request) -> None:
    svc = await services(request)
    if svc.rate_limiter is not None:
        identity = await identify(request)
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
