"""A shutdown always ends: each component's stop is bounded (common/lifecycle.stop_all)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from healthinfo.common.lifecycle import stop_all


class Recorder:
    def __init__(self, name: str, stopped: list[str]) -> None:
        self.name, self.stopped = name, stopped

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped.append(self.name)


class Stuck:
    """A stop that outlives its time and shrugs off its first cancellation (it ends on its
    own a while later, so that the test's event loop can close)."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(1.0)


class Failing:
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        raise RuntimeError("boom")


async def test_components_stop_in_reverse_order() -> None:
    stopped: list[str] = []
    await stop_all([Recorder("first", stopped), Recorder("second", stopped)])
    assert stopped == ["second", "first"]


async def test_a_stuck_stop_is_left_behind_logged_and_the_others_still_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopped: list[str] = []
    loop = asyncio.get_running_loop()
    began = loop.time()
    with caplog.at_level(logging.ERROR):
        await stop_all([Recorder("first", stopped), Stuck()], seconds=0.2)
    assert loop.time() - began < 0.9  # neither the stop nor its cancellation was awaited
    assert stopped == ["first"]
    assert [(r.msg, getattr(r, "component", None)) for r in caplog.records] == [
        ("lifecycle.stop_timed_out", "Stuck")
    ]
    assert caplog.records[0].awaiting == "stop"  # the stuck coroutine's frames


async def test_a_failing_stop_is_logged_and_the_others_still_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopped: list[str] = []
    with caplog.at_level(logging.ERROR):
        await stop_all([Recorder("first", stopped), Failing()])
    assert stopped == ["first"]
    assert [(r.msg, getattr(r, "component", None)) for r in caplog.records] == [
        ("lifecycle.stop_failed", "Failing")
    ]
