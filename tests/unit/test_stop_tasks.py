"""stop_tasks: background tasks end on stop, even those that swallow a cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from healthinfo.common.tasks import stop_tasks


async def _swallows_the_first_cancel(stopped: asyncio.Event) -> None:
    """What redis-py 8 does when cancelled while it connects: carries on, then waits again."""
    with contextlib.suppress(asyncio.CancelledError):  # swallowed
        await asyncio.sleep(3600)
    try:
        await asyncio.Event().wait()  # back to sleep, as the bus's publish loop does
    finally:
        stopped.set()


async def test_a_task_that_swallows_a_cancellation_still_stops() -> None:
    stopped = asyncio.Event()
    task = asyncio.create_task(_swallows_the_first_cancel(stopped))
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_tasks([task]), 2)
    assert task.done()
    assert stopped.is_set()


async def test_a_task_that_refuses_to_stop_is_given_up_on_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING):
        await asyncio.wait_for(stop_tasks([task], within_seconds=0.2), 2)
    assert not task.done()
    assert any(getattr(r, "tasks", None) == ["stubborn"] for r in caplog.records)
    task.get_coro().close()  # type: ignore[union-attr]


async def test_a_task_that_failed_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def fails_when_cancelled() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_when_cancelled(), name="failing")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING):
        await stop_tasks([task, None])
    assert [(r.task, r.error) for r in caplog.records if r.msg == "tasks.failed"] == [  # type: ignore[attr-defined]
        ("failing", "RuntimeError")
    ]
