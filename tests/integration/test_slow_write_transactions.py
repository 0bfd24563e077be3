"""A write transaction held too long is logged: on SQLite it held every other writer back."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fastapi import FastAPI

from healthinfo.common import uow as uow_module

SLOW = "db.write_transaction_slow"


@pytest.fixture
def short_threshold(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(uow_module, "SLOW_WRITE_SECONDS", 0.05)
    return 0.05


def slow_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.msg == SLOW]


async def test_a_slow_committed_write_is_logged_with_its_duration(
    app: FastAPI, short_threshold: float, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=uow_module.__name__):
        async with app.state.services.uows.write():
            await asyncio.sleep(short_threshold * 2)
    [record] = slow_records(caplog)
    assert record.outcome == "committed"  # type: ignore[attr-defined]
    assert record.seconds >= short_threshold  # type: ignore[attr-defined]


async def test_a_slow_rolled_back_write_is_logged_too(
    app: FastAPI, short_threshold: float, caplog: pytest.LogCaptureFixture
) -> None:
    async def refused_after_a_while() -> None:
        async with app.state.services.uows.write():
            await asyncio.sleep(short_threshold * 2)
            raise RuntimeError("refused")

    with caplog.at_level(logging.WARNING, logger=uow_module.__name__), pytest.raises(RuntimeError):
        await refused_after_a_while()
    [record] = slow_records(caplog)
    assert record.outcome == "rolled back"  # type: ignore[attr-defined]


async def test_a_quick_write_is_not_logged(app: FastAPI, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=uow_module.__name__):
        async with app.state.services.uows.write():
            pass
    assert slow_records(caplog) == []
