"""Small portable SQL helpers for the statements whose row count decides an outcome."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult

from healthinfo.common.uow import UnitOfWork


async def insert_if_absent(uow: UnitOfWork, table: Table, values: dict[str, Any]) -> bool:
    """Insert unless the primary key exists; True when this call inserted the row.

    ``ON CONFLICT DO NOTHING`` rather than catching IntegrityError: on PostgreSQL an error
    would abort the whole transaction, and a concurrent inserter is waited for, not raced.
    """
    dialect = uow.session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(table).values(**values).on_conflict_do_nothing()
    result = await uow.session.execute(statement)
    return rowcount(result) == 1


def rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
