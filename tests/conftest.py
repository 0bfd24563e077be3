"""Fixtures shared by the integration tests: one app per backend, a client, unique ids.

Integration tests run once per backend (``[sqlite]`` and ``[postgres]``). Each test uses fresh
kit and user ids, so tests share one database per backend without seeing each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from healthinfo.app import create_app
from healthinfo.config import Settings
from tests.support.backends import (
    BACKENDS,
    REDIS_HOST,
    REDIS_PORT,
    REDIS_URL,
    create_pg_database,
    delete_redis_keys,
    drop_pg_database,
    require_reachable,
    sqlite_url,
)
from tests.support.live import LIVE_ENV, STARTUP_SECONDS
from tests.support.lock_holders import processes_holding, sqlite_path
from tests.support.server import ServerProcess
from tests.support.tokens import TEST_AUDIT_KEYS, TEST_MASTER_KEYS, TEST_SECRET


def pytest_sessionstart(session: pytest.Session) -> None:
    if "postgres" in BACKENDS:
        require_reachable("127.0.0.1", 5432, "PostgreSQL")
        require_reachable(REDIS_HOST, REDIS_PORT, "Redis")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test on SQLite reports who has its database open, and the shared live
    server's last log lines: an intermittent ``database is locked`` then names its holder."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    values = getattr(item, "funcargs", {})
    path = sqlite_path(str(values.get("database_url", "")))
    if path is not None:
        holders = processes_holding(path)
        report.sections.append((f"processes with {path.name} open", "\n".join(holders) or "none"))
    live = values.get("live_server")
    if isinstance(live, ServerProcess) and live.log.exists():
        report.sections.append(("live server log (tail)", live.log.read_text()[-4000:]))


@pytest.fixture(scope="session")
async def keystore_url(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The key store lives in a database of its own, as in production."""
    if database_url.startswith("sqlite"):
        yield sqlite_url(tmp_path_factory.mktemp("keystore"))
        return
    name, url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(name)


@pytest.fixture(scope="session")
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this run's own on the shared Redis; its keys are deleted at the end."""
    prefix = f"healthinfo-test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    await delete_redis_keys(prefix)


@pytest.fixture(scope="session", params=BACKENDS)
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A fresh, empty database for this run on the given backend; dropped at the end."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path_factory.mktemp("sqlite"))
        return
    name, url = await create_pg_database()
    try:
        yield url
    finally:
        await drop_pg_database(name)


# Rate limiting stays on (the code path runs on every request) with limits no test reaches;
# tests/integration/test_rate_limits.py sets tight ones.
UNLIMITED = {
    f"rate_limit_{kind}_per_{who}": "1000000/minute"
    for kind in ("read", "write", "stream")
    for who in ("user", "address")
}


@pytest.fixture(scope="session")
def make_settings(
    database_url: str,
    keystore_url: str,
    redis_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., Settings]:
    """SQLite runs with the in-process cache; PostgreSQL runs with the real Redis."""
    data_dir = tmp_path_factory.mktemp("data")
    with_redis = database_url.startswith("postgresql")

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": database_url,
            "data_dir": data_dir,
            "jwt_secret": TEST_SECRET,
            "master_keys": TEST_MASTER_KEYS,
            "audit_keys": TEST_AUDIT_KEYS,
            "keystore_url": keystore_url,
            "migrate_on_start": True,
            "redis_url": REDIS_URL if with_redis else None,
            "redis_key_prefix": redis_prefix,
            **UNLIMITED,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture(scope="session")
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def open_client(application: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with await open_client(app) as http:
        yield http


@pytest.fixture(scope="session")
def live_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real ``healthinfo serve`` on this backend (in-process bus), shared by the live tests."""
    process = ServerProcess(
        database_url=database_url, data_dir=tmp_path_factory.mktemp("live"), extra_env=LIVE_ENV
    )
    process.start(timeout=STARTUP_SECONDS)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def kit_id() -> str:
    return f"KIT-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    return tmp_path
