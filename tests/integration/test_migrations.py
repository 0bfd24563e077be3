"""Every migration upgrades, downgrades and upgrades again, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from healthinfo.common.database import create_engines
from healthinfo.db import migrate
from healthinfo.db.models import Base
from tests.support.backends import BACKENDS, create_pg_database, drop_pg_database, sqlite_url


@pytest.fixture(params=BACKENDS)
async def empty_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    name = None
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
    else:
        name, url = await create_pg_database()
    engines = create_engines(url, pool_size=2, max_overflow=0, timeout=10)
    try:
        yield engines.write
    finally:
        await engines.dispose()
        if name:
            await drop_pg_database(name)


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_upgrade_creates_every_model_table(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    assert set(Base.metadata.tables) <= await table_names(empty_engine)
    assert await migrate.current_revision(empty_engine) == migrate.head_revision()


async def test_upgrade_downgrade_upgrade_round_trips(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    await migrate.downgrade(empty_engine, "base")
    assert await table_names(empty_engine) <= {"alembic_version"}
    assert await migrate.current_revision(empty_engine) is None
    await migrate.upgrade(empty_engine)
    assert set(Base.metadata.tables) <= await table_names(empty_engine)


async def test_each_revision_steps_down_and_up_one_at_a_time(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    revisions = migrate.revisions_oldest_first()
    for revision in reversed(revisions):
        await migrate.downgrade(empty_engine, "-1")
        assert await migrate.current_revision(empty_engine) != revision
    for revision in revisions:
        await migrate.upgrade(empty_engine, "+1")
        assert await migrate.current_revision(empty_engine) == revision


async def test_models_and_migrations_agree(empty_engine: AsyncEngine) -> None:
    """Autogenerate finds nothing to do: no model change is missing a migration."""
    await migrate.upgrade(empty_engine)
    assert await migrate.pending_model_changes(empty_engine) == []
