"""Where a database's schema stands against the code's Alembic head, in words for operators.

Readiness (``api/health.py``) and the commands that must not migrate (``import-legacy-redis
--dry-run``) ask this: a write on a schema behind the code's fails, so "ready" means "at head".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from healthinfo.db import migrate


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None
    head: str | None
    known: tuple[str, ...]

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        """``ok``, ``not migrated (head 0007)``, ``behind (at 0005, head 0007)`` or ``unknown
        revision 0009 (head 0007)`` (a newer release migrated it: this one is too old)."""
        if self.at_head:
            return "ok"
        if self.current is None:
            return f"not migrated (head {self.head})"
        if self.current in self.known:
            return f"behind (at {self.current}, head {self.head})"
        return f"unknown revision {self.current} (head {self.head})"


@functools.cache
def _script_revisions(location: Path) -> tuple[str | None, tuple[str, ...]]:
    """Read once per process: the migration scripts ship with the code and do not change."""
    return migrate.head_revision(location), tuple(migrate.revisions_oldest_first(location))


async def schema_state(
    engine: AsyncEngine, *, location: Path = migrate.MIGRATIONS_DIR
) -> SchemaState:
    head, known = _script_revisions(location)
    current = await migrate.current_revision(engine, location=location)
    return SchemaState(current=current, head=head, known=known)
