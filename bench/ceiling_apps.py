"""Ceilings for the read path: the same bytes served by a minimal FastAPI app and a bare ASGI app.

Both answer ``GET /v1/kits/{kitId}/health-information`` with the service's own representation
of a kit (read from the file given), and are served by uvicorn exactly as ``healthinfo serve``
serves the service (same loop, HTTP parser, log and proxy settings), so the gap to them is
what the service does per request beyond the framework and the server.

    python -m bench.ceiling_apps fastapi|asgi|fastapi_sync_deps|fastapi_async_deps \
        --port P --payload FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

PATH = "/v1/kits/{kit_id}/health-information"


def fastapi_app(payload: bytes) -> FastAPI:
    app = FastAPI()

    @app.get(PATH)
    async def read(kit_id: str) -> Response:
        return Response(payload, media_type="application/json", headers={"ETag": '"1"'})

    @app.get("/health/ready")
    async def ready() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app


def fastapi_deps_app(payload: bytes, *, sync: bool) -> FastAPI:
    """The minimal endpoint with two dependencies shaped like the service's ``services`` and
    ``rest_context`` (api/deps.py): plain ``def`` (FastAPI runs each in the thread pool) or
    ``async def`` (run on the event loop). The difference is what a thread hop costs."""
    app = FastAPI()

    def state_sync(request: Request) -> object:
        return request.app.state

    async def state_async(request: Request) -> object:
        return request.app.state

    state_dep = state_sync if sync else state_async

    # Depends() as defaults: annotations are strings here and could not name these locals.
    def context_sync(request: Request, state: object = Depends(state_dep)) -> str:
        return request.headers.get("user-agent", "")

    async def context_async(request: Request, state: object = Depends(state_dep)) -> str:
        return request.headers.get("user-agent", "")

    context_dep = context_sync if sync else context_async

    @app.get(PATH)
    async def read(kit_id: str, context: str = Depends(context_dep)) -> Response:
        return Response(payload, media_type="application/json", headers={"ETag": '"1"'})

    @app.get("/health/ready")
    async def ready() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app


def asgi_app(payload: bytes) -> Any:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"etag", b'"1"'),
    ]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "kind", choices=["fastapi", "asgi", "fastapi_sync_deps", "fastapi_async_deps"]
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--payload", type=Path, required=True)
    args = parser.parse_args()
    payload = args.payload.read_bytes()
    apps = {
        "fastapi": lambda: fastapi_app(payload),
        "asgi": lambda: asgi_app(payload),
        "fastapi_sync_deps": lambda: fastapi_deps_app(payload, sync=True),
        "fastapi_async_deps": lambda: fastapi_deps_app(payload, sync=False),
    }
    app = apps[args.kind]()
    # As healthinfo.cli._serve configures uvicorn for the service.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="info",
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
