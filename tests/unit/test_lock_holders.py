"""The SQLite lock-holder report names the processes that have the database file open."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.lock_holders import processes_holding, sqlite_path


def test_a_process_with_the_file_open_is_listed(tmp_path: Path) -> None:
    database = tmp_path / "test.db"
    with database.open("wb"):
        holders = processes_holding(database)
    assert any(line.startswith(f"{os.getpid()}: ") for line in holders)


def test_a_file_nobody_opened_has_no_holders(tmp_path: Path) -> None:
    database = tmp_path / "test.db"
    database.write_bytes(b"")
    assert processes_holding(database) == []


def test_the_wal_file_counts_as_the_database(tmp_path: Path) -> None:
    database = tmp_path / "test.db"
    with Path(f"{database}-wal").open("wb"):
        assert processes_holding(database)


def test_the_path_comes_from_a_sqlite_url_only() -> None:
    assert sqlite_path("sqlite+aiosqlite:////tmp/x/test-1.db") == Path("/tmp/x/test-1.db")
    assert sqlite_path("postgresql+asyncpg://postgres@127.0.0.1/db") is None
