"""HEALTHINFO_DATABASE_REPLICA_URLS: comma-separated asyncpg URLs of streaming replicas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from healthinfo.config import SettingsError, load_settings

PRIMARY = "postgresql+asyncpg://svc:pw@db-primary.example:5432/healthinfo"
REPLICA_A = "postgresql+asyncpg://svc:pw@db-replica-a.example:5432/healthinfo"
REPLICA_B = "postgresql+asyncpg://svc:pw@db-replica-b.example:5432/healthinfo"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HEALTHINFO_* variable from the caller's shell, and no stray .env: cwd is empty."""
    for name in list(os.environ):
        if name.upper().startswith("HEALTHINFO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEALTHINFO_DATABASE_URL", PRIMARY)


def settings_error(monkeypatch: pytest.MonkeyPatch, replicas: str) -> str:
    monkeypatch.setenv("HEALTHINFO_DATABASE_REPLICA_URLS", replicas)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    return str(caught.value)


def test_no_replicas_by_default() -> None:
    assert load_settings().database_replica_urls == []


def test_replicas_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHINFO_DATABASE_REPLICA_URLS", f" {REPLICA_A} ,{REPLICA_B},")
    assert load_settings().database_replica_urls == [REPLICA_A, REPLICA_B]


def test_an_empty_value_means_no_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHINFO_DATABASE_REPLICA_URLS", "")
    assert load_settings().database_replica_urls == []


def test_a_replica_url_without_the_async_driver_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    error = settings_error(monkeypatch, f"{REPLICA_A},postgresql://svc@db-replica-b/healthinfo")
    assert error.startswith("HEALTHINFO_DATABASE_REPLICA_URLS:")
    assert "postgresql+asyncpg://" in error


def test_a_sqlite_replica_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    error = settings_error(monkeypatch, "sqlite+aiosqlite:///replica.db")
    assert error.startswith("HEALTHINFO_DATABASE_REPLICA_URLS:")


def test_replicas_of_a_sqlite_primary_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEALTHINFO_DATABASE_URL")
    error = settings_error(monkeypatch, REPLICA_A)
    assert "HEALTHINFO_DATABASE_REPLICA_URLS needs a PostgreSQL HEALTHINFO_DATABASE_URL" in error


def test_the_error_never_shows_a_replica_password(monkeypatch: pytest.MonkeyPatch) -> None:
    error = settings_error(monkeypatch, "postgresql://svc:SECRET-PW-7f3@db-replica/healthinfo")
    assert "SECRET-PW-7f3" not in error
