"""Which database errors mean 503 (the database cannot serve us) rather than a bug (500)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from healthinfo.common.uow import is_database_unavailable


class PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, Exception("server closed the connection")),
        InterfaceError("SELECT 1", {}, Exception("connection is closed")),
        DBAPIError("SELECT 1", {}, PgError("53300")),  # too many connections
        DBAPIError("SELECT 1", {}, PgError("57P01")),  # admin shutdown
        DBAPIError("SELECT 1", {}, PgError("08006")),  # connection failure
        DBAPIError("SELECT", {}, PgError("42P01")),  # undefined table: a schema behind the code
        DBAPIError("SELECT", {}, PgError("42703")),  # undefined column: likewise (503, #14.2)
        ConnectionRefusedError(),
        TimeoutError(),
    ],
)
def test_connection_level_failures_are_unavailability(error: BaseException) -> None:
    assert is_database_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        IntegrityError("INSERT", {}, PgError("23505")),  # a bug or a race, not an outage
        ValueError("not a database error"),
    ],
)
def test_other_failures_are_not(error: BaseException) -> None:
    assert not is_database_unavailable(error)
