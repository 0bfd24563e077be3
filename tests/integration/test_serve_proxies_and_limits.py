"""What a real ``healthinfo serve`` believes and accepts from the network.

* Client addresses: X-Forwarded-For is ignored unless it comes from an address in
  ``HEALTHINFO_TRUSTED_PROXIES`` (default: none); the audit trail records what was believed.
* Header limits: a request line and headers above ``HEALTHINFO_MAX_HEADER_BYTES`` get a 431
  problem and the connection is closed; the application never sees the request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess
from tests.support.tokens import auth

FORWARDED_CLIENT = "198.51.100.23"
LIMIT = 4096


def serve(database_url: str, data_dir: Path, **env: str) -> Iterator[ServerProcess]:
    process = ServerProcess(
        database_url=database_url,
        data_dir=data_dir,
        extra_env={"HEALTHINFO_RATE_LIMIT_ENABLED": "false", **env},
    )
    process.start(timeout=90)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def default_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Nothing about proxies configured; a small header limit so tests send little."""
    yield from serve(
        database_url,
        tmp_path_factory.mktemp("serve-default"),
        HEALTHINFO_MAX_HEADER_BYTES=str(LIMIT),
    )


@pytest.fixture
def proxied_server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """The test client's own address (127.0.0.1) is the trusted balancer."""
    yield from serve(database_url, tmp_path, HEALTHINFO_TRUSTED_PROXIES="127.0.0.1")


async def recorded_client_address(base_url: str, kit_id: str, user: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        saved = await http.put(
            f"/v1/kits/{kit_id}/health-information",
            json={"answers": {"heightCm": 170}},
            headers={**auth(user), "X-Forwarded-For": FORWARDED_CLIENT},
        )
        assert saved.status_code == 201, saved.text
        events = await http.get(f"/v1/kits/{kit_id}/audit-events", headers=auth("root", "admin"))
    saves = [e for e in events.json()["items"] if e["action"] == "health-information.save"]
    address: str = saves[0]["clientAddress"]
    return address


async def test_x_forwarded_for_is_ignored_when_no_proxy_is_trusted(
    default_server: ServerProcess, kit_id: str, user: str
) -> None:
    assert await recorded_client_address(default_server.base_url, kit_id, user) == "127.0.0.1"


async def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(
    proxied_server: ServerProcess, kit_id: str, user: str
) -> None:
    assert await recorded_client_address(proxied_server.base_url, kit_id, user) == FORWARDED_CLIENT


async def test_headers_within_the_limit_are_served(default_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=default_server.base_url) as http:
        response = await http.get("/health/live", headers={"X-Padding": "p" * (LIMIT // 2)})
    assert response.status_code == 200


async def test_headers_over_the_limit_get_a_431_problem(default_server: ServerProcess) -> None:
    padding = {f"X-Padding-{n}": "p" * 512 for n in range(LIMIT // 512 + 1)}
    async with httpx.AsyncClient(base_url=default_server.base_url) as http:
        response = await http.get("/health/live", headers=padding)
    assert response.status_code == 431
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "request-header-fields-too-large"
    assert response.headers["connection"] == "close"


async def test_an_endless_header_line_is_cut_off_with_a_431(
    default_server: ServerProcess,
) -> None:
    """One header that never ends: refused while it is still arriving, not after."""
    reader, writer = await asyncio.open_connection("127.0.0.1", default_server.port)
    try:
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        answer = b""
        for _ in range(64):  # up to 64 x 1 KiB, far beyond the limit, never a line end
            writer.write(b"e" * 1024)
            try:
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(4096), timeout=0.05)
            except TimeoutError:
                continue
            except OSError:
                break
            if answer:
                break
        if not answer:
            answer = await asyncio.wait_for(reader.read(4096), timeout=5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 431 ")
