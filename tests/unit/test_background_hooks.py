"""After-commit hooks off the response path (common/uow.BackgroundHooks): in commit order,
none lost, none run for a rolled-back transaction, and the caller never waits for them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from healthinfo.common.uow import BackgroundHooks, UnitOfWork


def recorder(log: list[str], name: str) -> Callable[[], Awaitable[None]]:
    async def hook() -> None:
        await asyncio.sleep(0)
        log.append(name)

    return hook


def unit_of_work(background: BackgroundHooks) -> UnitOfWork:
    return UnitOfWork(session=None, writable=True, background=background)  # type: ignore[arg-type]


async def test_background_hooks_run_in_the_order_their_transactions_committed() -> None:
    background = BackgroundHooks()
    log: list[str] = []
    for version in range(1, 6):
        uow = unit_of_work(background)
        uow.after_commit(recorder(log, f"cache v{version}"), background=True)
        uow.after_commit(recorder(log, f"publish v{version}"), background=True)
        await uow.run_after_commit()
    await background.drain()
    assert log == [f"{what} v{v}" for v in range(1, 6) for what in ("cache", "publish")]


async def test_the_committer_does_not_wait_for_its_background_hooks() -> None:
    background = BackgroundHooks()
    release = asyncio.Event()
    done: list[str] = []

    async def slow() -> None:
        await release.wait()
        done.append("slow")

    uow = unit_of_work(background)
    uow.after_commit(slow, background=True)
    await asyncio.wait_for(uow.run_after_commit(), timeout=1)
    assert done == []
    release.set()
    await background.drain()
    assert done == ["slow"]


async def test_a_rolled_back_transaction_runs_no_background_hook() -> None:
    background = BackgroundHooks()
    log: list[str] = []
    uow = unit_of_work(background)
    uow.after_commit(recorder(log, "publish"), background=True)
    await uow.discard().run_after_commit()
    await background.drain()
    assert log == []


async def test_stopping_runs_what_is_still_queued() -> None:
    background = BackgroundHooks()
    log: list[str] = []
    uow = unit_of_work(background)
    for name in ("a", "b", "c"):
        uow.after_commit(recorder(log, name), background=True)
    await uow.run_after_commit()
    await background.stop()
    assert log == ["a", "b", "c"]


async def test_a_full_queue_makes_the_committer_wait_and_keeps_the_order() -> None:
    background = BackgroundHooks(max_pending=1)
    release = asyncio.Event()
    log: list[str] = []

    async def blocked() -> None:
        await release.wait()
        log.append("first")

    first = unit_of_work(background)
    first.after_commit(blocked, background=True)
    await first.run_after_commit()
    second = unit_of_work(background)
    second.after_commit(recorder(log, "second"), background=True)
    waiting = asyncio.create_task(second.run_after_commit())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    release.set()
    await asyncio.wait_for(waiting, timeout=1)
    await background.drain()
    assert log == ["first", "second"]
