"""A private PostgreSQL cluster on its own port, for tests that restart or crash it.

Never the shared one on 5432. ``initdb`` creates a fresh cluster in a temporary directory;
``pg_ctl`` starts, restarts (``-m fast``: a clean shutdown; ``-m immediate``: a crash, recovered
from the WAL on start) and stops it. PostgreSQL refuses to run as root, so as root every command
runs as the ``postgres`` OS user (``runuser``), in a directory that user owns; as any other user
it runs as that user. Durability settings are PostgreSQL's defaults (``fsync``,
``synchronous_commit`` on): a committed transaction survives an immediate restart.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.server import free_port


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if found:
        return Path(found[-1])
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    return Path(initdb).parent


class PrivatePostgres:
    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="healthinfo-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.directory, postgres.pw_uid, postgres.pw_gid)
        self.directory.chmod(0o700)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, port: int | None = None) -> str:
        """The service's URL, optionally through a proxy listening on ``port``."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{port or self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        result = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {result.stdout}{result.stderr}\n{tail}")

    def _options(self) -> str:
        return f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", *args)

    def start(self) -> None:
        if not self.data.exists():
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",  # only the empty cluster; the server itself runs with fsync on
            )
        self._pg_ctl("-t", "60", "-o", self._options(), "start")

    def restart(self, mode: str = "fast") -> None:
        """``fast``: clean shutdown and start; ``immediate``: crash, WAL recovery on start."""
        self._pg_ctl("-t", "60", "-m", mode, "-o", self._options(), "restart")

    def stop(self) -> None:
        try:
            self._pg_ctl("-t", "60", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
