"""``/docs``, ``/redoc`` and ``/``: the API's pages, working with no internet access.

FastAPI's own ``/docs`` loads Swagger UI from a CDN and starts it with an inline script, so it is
blank offline and under a strict Content-Security-Policy. Here Swagger UI and ReDoc come from the
``fastapi-offline`` package (which ships swagger-ui-dist's bundle and ReDoc's standalone build),
served under ``/docs/assets/``, and Swagger UI is started by ``static/swagger-init.js``, a file of
ours, so the pages need ``script-src 'self'`` and nothing more. ``/`` links every page a
newcomer looks for.
"""

from __future__ import annotations

import html
from typing import Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

from healthinfo.api.responses import json_response

ASSETS: Final = "/docs/assets"
SWAGGER_JS: Final = f"{ASSETS}/swagger-ui-bundle.js"
SWAGGER_CSS: Final = f"{ASSETS}/swagger-ui.css"
SWAGGER_INIT: Final = f"{ASSETS}/swagger-init.js"
REDOC_JS: Final = f"{ASSETS}/redoc.standalone.js"
FAVICON: Final = f"{ASSETS}/favicon.png"
# Swagger UI and ReDoc set inline styles (style attributes, styled-components), draw icons from
# data: URIs, and ReDoc runs its search in a worker made from a blob: URL. Scripts: ours only.
DOCS_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src 'self' blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
ROOT_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# What ``/`` points to: (path, what it is).
LINKS: Final = (
    ("/docs", "API documentation (Swagger UI): try every route with a token"),
    ("/redoc", "API documentation (ReDoc): the same document, for reading"),
    ("/openapi.json", "the OpenAPI document"),
    ("/demo", "live demo: several people edit one kit's questionnaire together"),
    ("/health/ready", "readiness: the database, cache, events bus and rate limits"),
    ("/health/live", "liveness"),
    ("/metrics", "Prometheus metrics"),
)

router = APIRouter(include_in_schema=False)


def install_docs(app: FastAPI) -> None:
    """Mount the pages and their assets (the app is built with ``docs_url=None``)."""
    app.include_router(router)
    app.mount(
        ASSETS,
        StaticFiles(packages=[("healthinfo.api", "static"), ("fastapi_offline", "static")]),
        name="docs-assets",
    )


def _page_headers(csp: str) -> dict[str, str]:
    return {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": csp,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


def _root_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root, title = _root_path(request), html.escape(request.app.title)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" href="{root}{SWAGGER_CSS}">
<link rel="icon" href="{root}{FAVICON}">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{root}{SWAGGER_JS}"></script>
<script src="{root}{SWAGGER_INIT}" data-openapi-url="{root}/openapi.json"></script>
</body>
</html>
"""
    return HTMLResponse(page, headers=_page_headers(DOCS_CSP))


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = _root_path(request)
    page = get_redoc_html(
        openapi_url=f"{root}/openapi.json",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{REDOC_JS}",
        redoc_favicon_url=f"{root}{FAVICON}",
        with_google_fonts=False,
    )
    return HTMLResponse(page.body, headers=_page_headers(DOCS_CSP))


@router.get("/")
async def index(request: Request) -> Response:
    """HTML for a browser, JSON for ``Accept: application/json``: where to go from here."""
    root, app = _root_path(request), request.app
    if _wants_json(request.headers.get("accept", "")):
        links = {path: f"{root}{path}" for path, _ in LINKS}
        return json_response(
            {"service": app.title, "version": app.version, "links": links},
            headers={"Vary": "Accept"},
        )
    items = "\n".join(
        f'<li><a href="{root}{path}"><code>{path}</code></a>: {html.escape(what)}</li>'
        for path, what in LINKS
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(app.title)}</title>
<style>body {{ font-family: system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; }}</style>
</head>
<body>
<h1>{html.escape(app.title)} <small>{html.escape(app.version)}</small></h1>
<p>{html.escape(app.description)} Every API route lives under <code>/v1</code> and takes
<code>Authorization: Bearer &lt;JWT&gt;</code>.</p>
<ul>
{items}
</ul>
</body>
</html>
"""
    return HTMLResponse(page, headers={**_page_headers(ROOT_CSP), "Vary": "Accept"})


def _wants_json(accept: str) -> bool:
    """JSON when the client names it and not HTML (browsers send ``text/html,…,*/*``)."""
    media = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    json = any(m in ("application/json", "application/*") for m in media)
    return json and "text/html" not in media
