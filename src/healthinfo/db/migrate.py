"""Run Alembic migrations programmatically over the service's own async engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
KEYSTORE_MIGRATIONS_DIR = Path(__file__).parent / "keystore_migrations"
KEYSTORE_VERSION_TABLE = "alembic_version_keystore"


def alembic_config(location: Path = MIGRATIONS_DIR) -> Config:
    config = Config()
    config.set_main_option("script_location", str(location))
    return config


async def upgrade(
    engine: AsyncEngine,
    revision: str = "head",
    *,
    location: Path = MIGRATIONS_DIR,
    codec: object | None = None,
) -> None:
    """``codec`` is the answer codec that data migrations (encrypting rows) use."""
    await _run(engine, lambda cfg: command.upgrade(cfg, revision), location, codec)


async def downgrade(
    engine: AsyncEngine,
    revision: str,
    *,
    location: Path = MIGRATIONS_DIR,
    codec: object | None = None,
) -> None:
    await _run(engine, lambda cfg: command.downgrade(cfg, revision), location, codec)


async def current_revision(engine: AsyncEngine, *, location: Path = MIGRATIONS_DIR) -> str | None:
    table = KEYSTORE_VERSION_TABLE if location == KEYSTORE_MIGRATIONS_DIR else "alembic_version"
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda c: MigrationContext.configure(
                c, opts={"version_table": table}
            ).get_current_revision()
        )


def head_revision(location: Path = MIGRATIONS_DIR) -> str | None:
    return ScriptDirectory.from_config(alembic_config(location)).get_current_head()


async def _run(engine: AsyncEngine, action: object, location: Path, codec: object | None) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config(location)
        config.attributes["connection"] = connection
        config.attributes["codec"] = codec
        action(config)  # type: ignore[operator]

    async with engine.begin() as conn:
        await conn.run_sync(run)


def revisions_oldest_first(location: Path = MIGRATIONS_DIR) -> list[str]:
    script = ScriptDirectory.from_config(alembic_config(location))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


async def pending_model_changes(engine: AsyncEngine) -> list[object]:
    """What autogenerate would emit: empty when the models match the migrated schema."""
    from alembic.autogenerate import compare_metadata

    from healthinfo.db.models import Base

    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda c: list(
                compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
                )
            )
        )
