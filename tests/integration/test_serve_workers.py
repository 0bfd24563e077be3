"""``healthinfo serve --workers N``: N processes behind one socket, sharing through Redis.

Each worker builds its own app in its own process (infra/serving.WorkerProcess), so SIGTERM
drains its streams like a single server does, and a dead worker is replaced by uvicorn's
supervisor.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from tests.support.backends import REDIS_URL
from tests.support.live import sse
from tests.support.server import ServerProcess
from tests.support.tokens import auth

pytestmark = pytest.mark.slow

WORKERS = 2


def worker_pids(parent: int) -> list[int]:
    """The supervisor's spawned workers (not multiprocessing's resource tracker)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def running(pid: int) -> bool:
    try:
        return b"zombie" not in Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return False


def wait_for_workers(parent: int, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = worker_pids(parent)
        if len(pids) == count:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"expected {count} workers, saw {worker_pids(parent)}")


@pytest.fixture
def server(database_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        database_url=database_url,
        data_dir=tmp_path,
        extra_env={
            "HEALTHINFO_REDIS_URL": REDIS_URL,
            "HEALTHINFO_REDIS_KEY_PREFIX": redis_prefix,
            "HEALTHINFO_ROOM_USER_LIMIT": "20",  # one user holds every stream of the test
        },
        args=("--workers", str(WORKERS)),
    )
    process.start(timeout=60)
    try:
        yield process
    finally:
        process.stop()


def pid_of(server: ServerProcess) -> int:
    assert server.process is not None
    return server.process.pid


async def test_workers_flag_starts_that_many_processes_that_all_serve(
    server: ServerProcess, kit_id: str
) -> None:
    wait_for_workers(pid_of(server), WORKERS)
    for step in range(20):  # a new connection each: the kernel spreads them over the workers
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            response = await client.patch(
                f"/v1/kits/{kit_id}/health-information",
                json={"answers": {"heightCm": 150 + step}},
                headers=auth("worker-user"),
            )
            assert response.status_code == 200, response.text
            assert response.json()["version"] == step + 1


async def test_an_event_reaches_streams_on_every_worker(server: ServerProcess, kit_id: str) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        created = await client.put(
            f"/v1/kits/{kit_id}/health-information",
            json={"answers": {"heightCm": 170}},
            headers=auth("owner"),
        )
        assert created.status_code == 201
    async with AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(sse(server.base_url, kit_id, "owner")) for _ in range(8)
        ]
        for stream in streams:
            assert (await stream.event("snapshot")).data["version"] == 1
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            patched = await client.patch(
                f"/v1/kits/{kit_id}/health-information",
                json={"answers": {"heightCm": 171}},
                headers=auth("owner"),
            )
            assert patched.status_code == 200
        for stream in streams:
            assert (await stream.event("updated")).data["version"] == 2


async def test_a_killed_worker_is_replaced_and_the_service_keeps_answering(
    server: ServerProcess, kit_id: str
) -> None:
    parent = pid_of(server)
    first = wait_for_workers(parent, WORKERS)
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = worker_pids(parent)
        if len(now) == WORKERS and first[0] not in now:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"worker {first[0]} was not replaced: {worker_pids(parent)}")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        for _ in range(6):
            ready = await client.get("/health/ready")
            assert ready.status_code == 200


async def test_sigterm_drains_open_streams_and_every_process_exits(
    server: ServerProcess, kit_id: str
) -> None:
    parent = pid_of(server)
    workers = wait_for_workers(parent, WORKERS)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        await client.put(
            f"/v1/kits/{kit_id}/health-information",
            json={"answers": {"heightCm": 170}},
            headers=auth("owner"),
        )
    async with sse(server.base_url, kit_id, "owner") as stream:
        await stream.event("snapshot")
        started = time.monotonic()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        await stream.until_end(within=8)  # the worker's exit hook ends the stream
        assert time.monotonic() - started < 8
    assert server.process.wait(timeout=15) == 0
    assert not [pid for pid in workers if running(pid)]


def test_more_than_one_worker_without_redis_is_refused_in_one_line(tmp_path: Path) -> None:
    import subprocess

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HEALTHINFO_")},
        "HEALTHINFO_DATA_DIR": str(tmp_path),
    }
    run = subprocess.run(
        [sys.executable, "-m", "healthinfo", "serve", "--port", "0", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "HEALTHINFO_REDIS_URL" in lines[0]
    assert "Traceback" not in run.stderr
