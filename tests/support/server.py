"""Run the real ``healthinfo serve`` in a subprocess on a free port, for crash and restart tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.tokens import TEST_AUDIT_KEYS, TEST_MASTER_KEYS, TEST_SECRET


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keystore_url_for(database_url: str) -> str:
    """Servers on one database share one key store: beside the SQLite file, or in the same
    PostgreSQL database (tables apart; production keeps it in a database of its own)."""
    if database_url.startswith("sqlite"):
        return database_url.removesuffix(".db") + "-keystore.db"
    return database_url


class ServerProcess:
    def __init__(
        self,
        *,
        database_url: str,
        data_dir: Path,
        extra_env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.args = args
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "HEALTHINFO_DATABASE_URL": database_url,
            "HEALTHINFO_DATA_DIR": str(data_dir),
            "HEALTHINFO_JWT_SECRET": TEST_SECRET,
            "HEALTHINFO_MASTER_KEYS": TEST_MASTER_KEYS,
            "HEALTHINFO_AUDIT_KEYS": TEST_AUDIT_KEYS,
            "HEALTHINFO_KEYSTORE_URL": keystore_url_for(database_url),
            "HEALTHINFO_MIGRATE_ON_START": "true",
            "HEALTHINFO_ENVIRONMENT": "test",
            # One process, whose pid is the server's: the crash tests SIGKILL exactly it.
            "HEALTHINFO_WORKERS": "1",
            **(extra_env or {}),
        }
        self.log = data_dir / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        command = [
            *(sys.executable, "-m", "healthinfo", "serve", "--port", str(self.port)),
            *self.args,
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing; what survives is what was committed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
