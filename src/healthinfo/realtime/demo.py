"""``/demo``: a static page where several people edit one kit's questionnaire together.

No build step: one HTML file with inline script and style, shipped as package data. It renders
the kit's own questionnaire version (every question type, open choices and read-only items
included; display items, nested groups, repeating groups, and
``enableWhen`` decided in the browser with the rules of ``questionnaires/conditions.py``, again on
every live event), writes with ``baseVersion`` over REST, follows changes over EventSource, and
shows presence (focus goes over the WebSocket) and conflicts. The token and kit id come from the URL
fragment (``/demo#kit=K1&token=…``), which browsers never send to the server.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.responses import HTMLResponse

router = APIRouter(include_in_schema=False)
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@router.get("/demo")
async def demo() -> HTMLResponse:
    page = resources.files("healthinfo.realtime").joinpath("static/demo.html").read_text("utf-8")
    return HTMLResponse(
        page,
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CSP,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )
