"""No health data, token or personal detail in any log line, on any route, failing or not.

Marker values travel through every route (free-text answers, an e-mail-like and a phone-like
answer, the bearer token itself, ``?access_token=<token>``, a kit id) including refused and
failing requests (400, 401, 404, 409, 415, 422, 500); every line written while they do (structlog
and the standard library, at DEBUG) is captured from stdout, and none may contain a marker.
The same is checked on a real ``healthinfo serve`` process, whose uvicorn lines (WebSocket
handshakes carry the raw query string) go through the same processors.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import connect

from healthinfo.app import create_app
from healthinfo.config import Settings
from healthinfo.infra.logging import configure_logging
from tests.support.answers import COMPLETE
from tests.support.backends import sqlite_url
from tests.support.server import ServerProcess
from tests.support.tokens import token

TEXT = "MARKER-a1b2"
EMAIL = "marker.a1b2@example.org"
PHONE = "+44 20 7946 0958"
BOOM_PATH = "/test-only/boom"


def marked_answers() -> dict[str, object]:
    return {
        **COMPLETE,
        "medications": f"{TEXT} twice daily",
        "additionalNotes": f"call me on {PHONE} or write to {EMAIL}",
        "genderIdentity": TEXT,
    }


async def boom() -> None:
    raise RuntimeError(f"failed while reading {TEXT} for {EMAIL}")


@pytest.fixture(scope="module")
async def observed_app(make_settings: Callable[..., Settings]) -> AsyncIterator[FastAPI]:
    """An app of its own, with a route that fails with markers in the exception's message."""
    application = create_app(
        make_settings(rate_limit_enabled=False, db_pool_size=2, db_max_overflow=4)
    )
    application.add_api_route(BOOM_PATH, boom, methods=["GET"])
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def log_output(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """Everything written to stdout and stderr during the test, with logging at DEBUG."""
    configure_logging(level="DEBUG", json=True)
    capsys.readouterr()
    captured: list[str] = []

    def read() -> str:
        out, err = capsys.readouterr()
        captured.append(out + err)
        return "".join(captured)

    yield read
    configure_logging(level="INFO", json=True)


def assert_clean(output: str, markers: dict[str, str]) -> None:
    for name, marker in markers.items():
        leaks = [line for line in output.splitlines() if marker in line]
        assert not leaks, f"{name} leaked into {len(leaks)} log line(s): {leaks[:3]}"


def key_material(env: dict[str, str]) -> dict[str, str]:
    """The server's secrets (the JWT secret, each master and audit key's secret part): none
    may be logged, not even at DEBUG."""
    found = {"JWT secret": env["HEALTHINFO_JWT_SECRET"]}
    for name in ("HEALTHINFO_MASTER_KEYS", "HEALTHINFO_AUDIT_KEYS"):
        for i, entry in enumerate(env[name].split(",")):
            found[f"{name} #{i}"] = entry.partition(":")[2]
    assert all(len(secret) >= 32 for secret in found.values()), "unexpected key format"
    return found


def log_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


async def test_no_marker_reaches_the_logs_on_any_route(
    observed_app: FastAPI, log_output: Callable[[], str]
) -> None:
    kit = f"KIT-{uuid.uuid4().hex[:12]}"
    owner, friend = f"owner-{uuid.uuid4().hex[:8]}", f"friend-{uuid.uuid4().hex[:8]}"
    owner_token = token(owner)
    admin_token, auditor_token = token("admin-1", ["admin"]), token("auditor-1", ["auditor"])
    as_owner = {"Authorization": f"Bearer {owner_token}"}
    as_admin = {"Authorization": f"Bearer {admin_token}"}
    as_auditor = {"Authorization": f"Bearer {auditor_token}"}
    in_query = f"access_token={owner_token}"
    data = f"/v1/kits/{kit}/health-information"
    request_ids: list[str] = []
    transport = httpx.ASGITransport(app=observed_app, raise_app_exceptions=False)

    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

        async def call(method: str, url: str, expected: int, **kwargs: object) -> httpx.Response:
            request_id = f"req-{uuid.uuid4().hex[:12]}"
            request_ids.append(request_id)
            headers = {"X-Request-ID": request_id, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
            response = await client.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]
            assert response.status_code == expected, (method, url, response.text)
            return response

        await call("POST", f"/v1/kits/{kit}/claim?{in_query}", 201, headers=as_owner)
        await call("PUT", data, 201, headers=as_owner, json={"answers": marked_answers()})
        await call("GET", f"{data}?{in_query}", 200, headers=as_owner)
        await call("GET", data, 304, headers={**as_owner, "If-None-Match": '"1"'})
        await call(
            "PATCH",
            data,
            200,
            headers={**as_owner, "Content-Type": "application/merge-patch+json"},
            content=json.dumps({"answers": {"otherConditions": f"{TEXT} {EMAIL}"}}),
        )
        # Refused writes: a wrong-typed answer, an unknown question, a body that is not JSON,
        # a media type we do not take.
        await call("PATCH", data, 422, headers=as_owner, json={"answers": {"heightCm": TEXT}})
        await call("PUT", data, 422, headers=as_owner, json={"answers": {TEXT: PHONE}})
        await call(
            "PUT",
            data,
            400,
            headers={**as_owner, "Content-Type": "application/json"},
            content=f'{{"answers": {{"medications": "{TEXT}"',
        )
        await call(
            "PUT", data, 415, headers={**as_owner, "Content-Type": "text/plain"}, content=TEXT
        )
        # Members, refused and accepted.
        members = f"/v1/kits/{kit}/members"
        await call("PUT", f"{members}/{friend}", 422, headers=as_owner, json={"role": TEXT})
        await call("PUT", f"{members}/{friend}", 201, headers=as_owner, json={"role": "editor"})
        await call("GET", members, 200, headers=as_owner)
        await call("DELETE", f"{members}/{friend}", 204, headers=as_owner)
        # History, submission, a write on submitted data, an amendment.
        await call("GET", f"{data}/history", 200, headers=as_owner)
        await call("GET", f"{data}/history/1", 200, headers=as_owner)
        await call("POST", f"{data}/submit", 200, headers=as_owner)
        await call("PUT", data, 409, headers=as_owner, json={"answers": marked_answers()})
        await call(
            "POST",
            f"{data}/amendments",
            200,
            headers=as_admin,
            json={"answers": {"allergyDetails": TEXT}, "reason": f"{TEXT} phoned from {PHONE}"},
        )
        await call("GET", f"/v1/kits/{kit}/audit-events", 200, headers=as_auditor)
        await call("GET", f"/v1/kits/{kit}/export", 200, headers=as_owner)
        # The live route takes the token in the query; a kit the caller may not see is 404.
        await call(
            "GET", f"/v1/kits/KIT-{uuid.uuid4().hex[:8]}/health-information/events?{in_query}", 404
        )
        # Bad credentials: a token-shaped marker, a garbled token in the query.
        await call("GET", data, 401, headers={"Authorization": f"Bearer {TEXT}.{EMAIL}"})
        await call("GET", f"{data}/events?access_token={owner_token}x", 401)
        # Legacy route, erasure, and an unexpected failure whose message quotes markers.
        await call(
            "GET", f"/kits/{kit}/health-information/history?{in_query}", 200, headers=as_owner
        )
        await call("DELETE", data, 204, headers=as_owner)
        await call("GET", f"{BOOM_PATH}?{in_query}", 500, headers=as_owner)

    output = log_output()
    assert_clean(
        output,
        {
            "free text": TEXT,
            "e-mail": EMAIL,
            "phone": PHONE,
            "owner token": owner_token,
            "admin token": admin_token,
            "auditor token": auditor_token,
            "kit id": kit,
        },
    )
    # The capture saw the traffic: one access line per request, with its request id and the
    # route template; and the 500 was logged with its exception's type.
    lines = log_lines(output)
    access = {line["request_id"]: line for line in lines if line["event"] == "http.request"}
    assert set(request_ids) <= set(access), "a request without its access-log line"
    assert access[request_ids[1]]["route"] == "/v1/kits/{kitId}/health-information"
    assert access[request_ids[-1]]["status"] == 500
    failures = [line for line in lines if line["event"] == "request.unhandled_exception"]
    assert failures, "the 500 was not logged"
    assert failures[0]["request_id"] == request_ids[-1]
    assert failures[0]["exception"]["type"] == "RuntimeError"  # type: ignore[index]


def test_a_real_server_logs_no_token_query_string_or_kit_id(tmp_path: Path) -> None:
    """uvicorn's own lines too: its access log is off, its WebSocket lines are redacted."""
    import asyncio

    server = ServerProcess(
        database_url=sqlite_url(tmp_path),
        data_dir=tmp_path,
        extra_env={"HEALTHINFO_LOG_LEVEL": "DEBUG", "HEALTHINFO_RATE_LIMIT_ENABLED": "false"},
    )
    kit = f"KITMARK-{uuid.uuid4().hex[:10]}"
    owner_token = token(f"owner-{uuid.uuid4().hex[:8]}")
    data = f"{server.base_url}/v1/kits/{kit}/health-information"
    server.start()
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {owner_token}"}) as http:
            saved = http.put(data, json={"answers": marked_answers()})
            assert saved.status_code == 201, saved.text
            assert http.get(f"{data}?access_token={owner_token}").status_code == 200
            wrong = http.patch(data, json={"answers": {"heightCm": f"{TEXT} {EMAIL}"}})
            assert wrong.status_code == 422
            events = f"{data}/events?access_token={owner_token}"
            with httpx.stream("GET", events, timeout=10) as stream:
                assert stream.status_code == 200
                assert next(stream.iter_lines()).startswith(("event:", "retry:", ":"))

        async def websocket() -> None:
            url = data.replace("http://", "ws://", 1) + f"/ws?access_token={owner_token}"
            async with connect(url) as ws:
                update = {"type": "update", "requestId": "r1", "answers": {"medications": TEXT}}
                await ws.send(json.dumps(update))
                for _ in range(5):
                    if json.loads(await ws.recv())["type"] == "ack":
                        break
                else:
                    raise AssertionError("no ack for the WebSocket update")

        asyncio.run(websocket())
    finally:
        server.stop()
    output = server.log.read_text()
    assert_clean(
        output,
        {
            "free text": TEXT,
            "e-mail": EMAIL,
            "phone": PHONE,
            "token": owner_token,
            "kit id": kit,
            **key_material(server.env),
        },
    )
    lines = output.splitlines()
    assert all(line.startswith("{") for line in lines if line.strip()), "a line not from our logs"
    access = [line for line in log_lines(output) if line["event"] == "http.request"]
    assert {line["route"] for line in access} >= {"/v1/kits/{kitId}/health-information"}
    assert any(line["event"] == "websocket.session" for line in log_lines(output))
