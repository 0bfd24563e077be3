"""HTTP method manners (RFC 9110 §9.3.2, §9.3.7, §15.5.6): a complete ``Allow``, OPTIONS, HEAD.

The router alone gets these wrong: a 405 names only the methods of the first route whose path
matched (``/v1/kits/{kitId}/health-information`` is four routes: GET, PUT, PATCH, DELETE), FastAPI
routes refuse HEAD, and OPTIONS is a 405. So, in the edge middleware (``api/edge.py``):

* the methods a path allows are the union over every route whose template matches it (GET
  implies HEAD; OPTIONS always), computed from the app's routes when needed, so routes added
  after start-up count too;
* every 405 carries that complete ``Allow``;
* OPTIONS on a routed path answers 204 with it, before authentication (it discloses only what
  the OpenAPI document says anyway); an unrouted path stays the router's 404 problem;
* HEAD runs the route as GET and sends the same status and headers with no body. A streaming
  response ends after its headers: the route sees the client leave (``http.disconnect``), so
  an event stream cannot hang a HEAD. Routes that would do work only to have it thrown away
  (the SSE route) ask :func:`is_head` and answer headers only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Mount, compile_path
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

# What a static files mount serves (Starlette's StaticFiles: GET, and HEAD with it).
STATIC_METHODS = frozenset({"GET"})
# The order ``Allow`` lists methods in: reads, writes, then the implicit ones.
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
HEAD_STATE = "head_request"  # in scope["state"]: this GET is really a HEAD


@lru_cache(maxsize=512)
def _template_regex(template: str) -> re.Pattern[str]:
    return compile_path(template)[0]


def route_path(scope: Scope) -> str:
    """The path the router matches: the request path without the ASGI ``root_path``."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


def declared_methods(routes: Iterable[BaseRoute], path: str) -> frozenset[str]:
    """Every method some HTTP route declares for ``path``. WebSocket routes and other mounts
    have none; a static files mount (the /docs assets) serves GET: without it, its 405 would
    say ``Allow: OPTIONS`` and its OPTIONS would be a 405."""
    found: set[str] = set()
    for context in iter_route_contexts(list(routes)):
        route = context.original_route
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            if route.path_regex.match(path):
                found |= STATIC_METHODS
            continue
        template, methods = context.path, context.methods
        if template and methods and _template_regex(template).match(path):
            found |= {method.upper() for method in methods}
    return frozenset(found)


def allow_value(declared: frozenset[str]) -> str:
    """The ``Allow`` value for a path's declared methods: GET brings HEAD, OPTIONS is always
    there (this middleware answers it)."""
    methods = set(declared) | {"OPTIONS"}
    if "GET" in methods:
        methods.add("HEAD")
    known = [m for m in METHOD_ORDER if m in methods]
    return ", ".join(known + sorted(methods - set(METHOD_ORDER)))


def is_head(scope: Scope) -> bool:
    """Whether this request came as HEAD (the route sees GET): its body will be dropped."""
    return bool(scope.get("state", {}).get(HEAD_STATE))
