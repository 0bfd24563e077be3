"""Operator mistakes as one line: what was tried (host, port, database) and why it failed.

An operator who points a command at a wrong URL wants to read, on one line, which address was
tried and what the other end said, not a driver's traceback; and never the password that was in
the URL. The commands call ``check_database`` / ``check_redis`` before their work, and
``cli.main`` prints an ``OperatorError`` as ``healthinfo: <message>`` with its exit status.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from healthinfo.common.uow import innermost_cause

# Exit statuses: 1 = the environment (a server that does not answer), 2 = the invocation or
# the configuration (argparse uses 2 as well).
UNREACHABLE = 1
USAGE = 2


class OperatorError(Exception):
    """A mistake an operator can fix; ``str()`` is one line, ``exit_code`` ends the command."""

    def __init__(self, message: str, exit_code: int = UNREACHABLE) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the parts held
        self.exit_code = exit_code


def database_target(url: str) -> str:
    """``PostgreSQL at db.example:5432 (database hi, user svc)``; never the password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database or ':memory:'}"
    user = f", user {parsed.username}" if parsed.username else ""
    return (
        f"PostgreSQL at {parsed.host or 'localhost'}:{parsed.port or 5432} "
        f"(database {parsed.database or '-'}{user})"
    )


def redis_target(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"Redis at socket {parts.path}"
    database = parts.path.lstrip("/") or "0"
    return f"Redis at {parts.hostname or 'localhost'}:{parts.port or 6379} (db {database})"


def reason(exc: BaseException, *, password: str | None = None) -> str:
    """Why a connection failed, from the innermost cause: the driver's or the OS's words."""
    inner = innermost_cause(exc)
    if isinstance(inner, socket.gaierror):
        why = f"the host name does not resolve ({inner.strerror})"
    elif isinstance(inner, TimeoutError):
        why = "no answer before the timeout (HEALTHINFO_DB_TIMEOUT_SECONDS)"
    elif isinstance(inner, OSError) and inner.errno and inner.errno > 0:
        why = os.strerror(inner.errno)
    else:
        why = str(inner).splitlines()[0] if str(inner) else type(inner).__name__
    if password:
        why = why.replace(password, "**********")
    return why


async def check_database(name: str, url: str, engine: AsyncEngine) -> None:
    """Connect once; an ``OperatorError`` naming the target and the reason when that fails.

    ``name`` is the setting that holds the URL (``HEALTHINFO_DATABASE_URL``), so the line says
    which one to fix.
    """
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        password = make_url(url).password
        raise OperatorError(
            f"cannot reach {database_target(url)} ({name}): "
            f"{reason(exc, password=str(password) if password else None)}"
        ) from None


async def check_redis(name: str, url: str, *, timeout_seconds: float = 5.0) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(
        url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
    )
    try:
        await client.ping()
    except Exception as exc:
        raise OperatorError(
            f"cannot reach {redis_target(url)} ({name}): "
            f"{reason(exc, password=urlsplit(url).password)}"
        ) from None
    finally:
        await client.aclose()
