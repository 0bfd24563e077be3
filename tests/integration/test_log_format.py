"""``healthinfo serve`` writes JSON lines into a pipe, and the console layout onto a terminal.

Nothing configured (``HEALTHINFO_LOG_JSON`` unset, i.e. auto): the format follows what stdout
is. The check runs on SQLite only: which renderer runs does not depend on the database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.support.backends import sqlite_url
from tests.support.live import STARTUP_SECONDS
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow

ANSI_ESCAPE = "\x1b["


def serve_command(port: int) -> list[str]:
    return [sys.executable, "-m", "healthinfo", "serve", "--port", str(port)]


def server_env(tmp_path: Path) -> tuple[int, dict[str, str]]:
    """A port and the environment of a server of its own, the log format left to auto."""
    server = ServerProcess(database_url=sqlite_url(tmp_path), data_dir=tmp_path)
    env = {k: v for k, v in server.env.items() if k != "HEALTHINFO_LOG_JSON"}
    return server.port, env


def wait_ready(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited during start-up"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server was not ready in {STARTUP_SECONDS}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def pseudo_terminal() -> Iterator[tuple[int, list[bytes]]]:
    """A pty: its follower end for the child's stdout, and what the child wrote so far."""
    leader, follower = os.openpty()
    received: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every follower end is closed
                return
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield follower, received
    finally:
        os.close(follower)
        reader.join(timeout=5)
        os.close(leader)


def test_serve_writes_one_json_object_per_line_into_a_pipe(tmp_path: Path) -> None:
    port, env = server_env(tmp_path)
    process = subprocess.Popen(
        serve_command(port), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_ready(process, port)
        assert httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=5).status_code == 200
    finally:
        stop(process)
    out, err = process.communicate(timeout=10)
    lines = [line for line in (out + err).decode().splitlines() if line.strip()]
    assert lines, "the server wrote no log line"
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(event, dict) and "event" in event for event in events)
    assert ANSI_ESCAPE not in (out + err).decode()


def test_serve_writes_the_coloured_console_layout_onto_a_terminal(tmp_path: Path) -> None:
    port, env = server_env(tmp_path)
    with pseudo_terminal() as (terminal, received):
        stderr: IO[bytes] = open(os.devnull, "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen(serve_command(port), env=env, stdout=terminal, stderr=stderr)
        try:
            wait_ready(process, port)
        finally:
            stop(process)
            stderr.close()
    output = b"".join(received).decode()
    assert ANSI_ESCAPE in output
    assert "Application startup complete" in output
    assert not any(line.lstrip().startswith("{") for line in output.splitlines())
