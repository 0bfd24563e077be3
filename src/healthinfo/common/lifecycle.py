"""Background components that start with the app and stop with it (relay, bus, warmers)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

logger = logging.getLogger(__name__)

# Each component's own stop is bounded (the read-audit batcher 10 s, the export runner 30 s);
# this is the backstop for one that is not, so that a shutdown always ends.
STOP_SECONDS = 45.0


class Lifecycle(Protocol):
    """Started in registration order after migrations; stopped in reverse order."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def stop_all(started: Sequence[Lifecycle], *, seconds: float = STOP_SECONDS) -> None:
    """Stop ``started`` in reverse order, each within ``seconds``.

    A stop that does not end in time, or fails, is logged with the component's class
    (``lifecycle.stop_timed_out`` / ``lifecycle.stop_failed``) and left behind: the next
    components still stop, and the process still exits. ``asyncio.wait``, not ``wait_for``:
    a stop that ignores its cancellation must not hold the shutdown either.
    """
    for component in reversed(started):
        name = type(component).__name__
        task = asyncio.ensure_future(component.stop())
        done, _ = await asyncio.wait({task}, timeout=seconds)
        if not done:
            # Where it waits (function names only, outermost first): what to look at next.
            where = " > ".join(frame.f_code.co_name for frame in task.get_stack(limit=12))
            task.cancel()
            logger.error("lifecycle.stop_timed_out", extra={"component": name, "awaiting": where})
            continue
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "lifecycle.stop_failed",
                extra={"component": name, "cause": type(task.exception()).__name__},
            )
