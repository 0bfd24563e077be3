"""Run the real ``healthinfo worker`` in a subprocess, for crash and parallel-worker tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.forwarding import FAST, FORWARD_SECRET
from tests.support.tokens import TEST_SECRET


class WorkerProcess:
    def __init__(
        self,
        *,
        database_url: str,
        data_dir: Path,
        forward_url: str,
        name: str,
        extra_env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.args = args
        fast = {f"HEALTHINFO_{key.upper()}": str(value) for key, value in FAST.items()}
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HEALTHINFO_")},
            "HEALTHINFO_DATABASE_URL": database_url,
            "HEALTHINFO_DATA_DIR": str(data_dir),
            "HEALTHINFO_JWT_SECRET": TEST_SECRET,
            "HEALTHINFO_ENVIRONMENT": "test",
            "HEALTHINFO_MIGRATE_ON_START": "false",
            "HEALTHINFO_FORWARD_URL": forward_url,
            "HEALTHINFO_FORWARD_SECRET": FORWARD_SECRET,
            **fast,
            **(extra_env or {}),
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / f"worker-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "healthinfo", "worker", *self.args]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no clean-up; its claims stay leased until the lease ends."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, the way an orchestrator stops it; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]
