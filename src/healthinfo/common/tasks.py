"""Stopping background tasks for sure, within a bound.

``task.cancel()`` asks; it does not guarantee. redis-py 8 swallows a cancellation that lands
while it sets up a connection and carries on, so ``task.cancel(); await task`` can wait forever
for a loop that has gone back to sleep: the bus's publish loop, cancelled while it published a
write's event, once hung the app's shutdown that way. ``stop_tasks`` repeats the request until
every task has ended, and gives up (logging which) after ``within_seconds`` rather than hang.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)
RETRY_CANCEL_SECONDS = 0.05


async def stop_tasks(
    tasks: Iterable[asyncio.Task[Any] | None], *, within_seconds: float = 5.0
) -> None:
    """Cancel ``tasks`` until each has ended; their own exceptions are logged, not raised."""
    pending = {task for task in tasks if task is not None and not task.done()}
    finished: list[asyncio.Task[Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_seconds
    while pending:
        for task in pending:
            task.cancel()
        done, pending = await asyncio.wait(pending, timeout=RETRY_CANCEL_SECONDS)
        finished += done
        if pending and loop.time() >= deadline:
            names = sorted(task.get_name() for task in pending)
            logger.warning("tasks.not_stopped", extra={"tasks": names})
            break
    for task in finished:
        if not task.cancelled() and task.exception() is not None:
            error = type(task.exception()).__name__
            logger.warning("tasks.failed", extra={"task": task.get_name(), "error": error})
