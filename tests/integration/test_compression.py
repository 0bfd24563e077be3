"""gzip for JSON over 1 KiB, when the client accepts it; never for event streams."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
from fastapi import FastAPI
from starlette.responses import StreamingResponse

from healthinfo.api.compression import MINIMUM_SIZE
from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.conftest import open_client
from tests.support.backends import sqlite_url
from tests.support.server import ServerProcess
from tests.support.tokens import auth, token

GZIP = {"Accept-Encoding": "gzip"}


async def test_a_large_json_response_is_gzipped(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/v1/questionnaires/health-information", headers={**auth("reader-1"), **GZIP}
    )
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in response.headers["vary"].lower()
    compressed = int(response.headers["content-length"])
    assert len(response.content) > MINIMUM_SIZE  # httpx decoded it
    assert compressed < len(response.content)
    assert response.json()["id"] == "health-information"


async def test_without_accept_encoding_the_same_response_is_plain(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/v1/questionnaires/health-information",
        headers={**auth("reader-1"), "Accept-Encoding": "identity"},
    )
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content) > MINIMUM_SIZE


async def test_a_small_json_response_is_not_gzipped(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live", headers=GZIP)
    assert response.status_code == 200
    assert len(response.content) < MINIMUM_SIZE
    assert "content-encoding" not in response.headers


async def stream_of_events() -> AsyncIterator[bytes]:
    for number in range(40):
        yield f"event: updated\nid: {number}\ndata: {json.dumps({'n': 'x' * 64})}\n\n".encode()


async def test_an_event_stream_is_never_gzipped(make_settings: Callable[..., Settings]) -> None:
    """Over 1 KiB and the client accepts gzip: still sent as is, event by event."""
    app: FastAPI = create_app(make_settings(db_pool_size=2, db_max_overflow=4))

    @app.get("/test-only/events")
    async def events() -> StreamingResponse:
        return StreamingResponse(stream_of_events(), media_type="text/event-stream")

    # The control: the same bytes as JSON are compressed by the same app.
    with_json = StreamingResponse(stream_of_events(), media_type="application/json")
    app.add_api_route("/test-only/json", lambda: with_json)
    # One lifespan, as in production: starting and stopping the same app twice (as this test
    # once did) hung intermittently in the second shutdown on PostgreSQL + Redis.
    async with app.router.lifespan_context(app), await open_client(app) as client:
        response = await client.get("/test-only/events", headers=GZIP)
        compressed = await client.get("/test-only/json", headers=GZIP)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in response.headers
    assert len(response.content) > MINIMUM_SIZE
    assert response.content.startswith(b"event: updated\nid: 0\n")
    assert compressed.headers["content-encoding"] == "gzip"


def test_the_live_event_stream_of_a_real_server_is_not_gzipped(tmp_path: Path) -> None:
    server = ServerProcess(
        database_url=sqlite_url(tmp_path),
        data_dir=tmp_path,
        extra_env={"HEALTHINFO_RATE_LIMIT_ENABLED": "false"},
    )
    owner = token("owner-gzip")
    server.start()
    try:
        data = f"{server.base_url}/v1/kits/KIT-gzip/health-information"
        answers = {"medications": "x" * 2000}
        saved = httpx.put(data, json={"answers": answers}, headers=auth("owner-gzip"))
        assert saved.status_code == 201
        headers = {"Authorization": f"Bearer {owner}", **GZIP}
        with httpx.stream("GET", f"{data}/events", headers=headers, timeout=10) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in stream.headers
            raw = b""
            for chunk in stream.iter_raw():
                raw += chunk
                if b"\n\n" in raw and b"event: snapshot" in raw:
                    break
        assert not raw.startswith(gzip.compress(b"")[:2])  # not a gzip member
        assert b"x" * 2000 in raw  # the snapshot, readable as sent
    finally:
        server.stop()
