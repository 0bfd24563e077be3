"""What a bench run stands on: a fresh PostgreSQL database, a Redis key prefix, processes.

Everything created here is removed again by the caller's ``finally``: the database is dropped
(``WITH (FORCE)``), the Redis keys under the run's prefix are deleted, and every process is
started in its own process group so that stopping it stops its children too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import asyncpg
import httpx
import redis.asyncio as aioredis

PG_ADMIN_DSN = os.environ.get(
    "HEALTHINFO_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("HEALTHINFO_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A port nothing listens on (bound, then released): connections to it are refused."""
    return free_port()


def pinning() -> tuple[list[str], list[str]]:
    """``taskset`` prefixes: the server under test on CPU 0, the load generator on CPU 1.

    PostgreSQL and Redis are not pinned. With fewer than two CPUs (or no taskset) nothing is.
    """
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return [], []
    return ["taskset", "-c", "0"], ["taskset", "-c", "1"]


async def create_database() -> tuple[str, str]:
    """A fresh, empty database: (its name, its SQLAlchemy asyncpg URL)."""
    name = f"healthinfo_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return name, f"{base}/{name}"


def plain_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def delete_redis_keys(prefix: str) -> int:
    client = aioredis.Redis.from_url(REDIS_URL)
    deleted = 0
    try:
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            deleted += int(await client.delete(key))
    finally:
        await client.aclose()
    return deleted


def tear_down(
    processes: Sequence[Process], databases: Sequence[str], prefix: str, work: Path
) -> None:
    """Stop what a bench tool started and remove what it created (databases, keys, files)."""
    for process in processes:
        process.stop()
    for name in databases:
        asyncio.run(drop_database(name))
    asyncio.run(delete_redis_keys(prefix))
    shutil.rmtree(work, ignore_errors=True)


class Process:
    """A child process in its own process group, output to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        cpu: Sequence[str] = (),
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.cwd = cwd or log_dir
        self.argv = [*cpu, *argv]
        self.env = dict(env)
        self.log = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_http(self, url: str, *, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready within {timeout} s:\n{self.tail()}")

    def rss_kib(self) -> int:
        """Resident memory of the process (taskset execs the program: same pid)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for {self.name}")

    def cpu_seconds(self) -> float:
        """User + system CPU time so far of the process and its live descendants.

        ``serve --workers N`` forks N worker processes that do the work: the supervisor alone
        would account almost nothing. With one worker the tree is the process itself.
        """
        return sum(_cpu_seconds(pid) for pid in _tree(self.pid))

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the group, then SIGKILL if it does not exit in time."""
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


def run_json(
    argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> dict[str, object]:
    """Run a load process to completion (its own process group) and parse its last JSON line."""
    with subprocess.Popen(
        list(argv),
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            raise
    text = out.decode(errors="replace")
    for line in reversed(text.splitlines()):
        if line.startswith("BENCH_JSON "):
            result: dict[str, object] = json.loads(line.removeprefix("BENCH_JSON "))
            return result
    raise RuntimeError(
        f"{argv[0]} gave no result (exit {proc.returncode}):\n{text[-2000:]}\n"
        f"{err.decode(errors='replace')[-2000:]}"
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """The process and its live descendants, from /proc/<pid>/task/<tid>/children."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                queue.extend(int(child) for child in (task / "children").read_text().split())
    return found
