"""Readiness probes stay cheap: a schema check's answer is reused for a few seconds."""

from __future__ import annotations

from healthinfo.api.readiness import Remembered


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_check_is_asked_once_within_its_lifetime() -> None:
    asked: list[str] = []

    async def check() -> str:
        asked.append("schema")
        return "ok"

    clock = Clock()
    remembered = Remembered(check, ttl=5.0, clock=clock)
    first = await remembered.get()
    clock.now += 4.9
    answers = [first, await remembered.get()]
    assert (answers, len(asked)) == (["ok", "ok"], 1)


async def test_a_check_is_asked_again_once_its_answer_is_old() -> None:
    answers = iter(["behind (at 0005, head 0007)", "ok"])

    async def check() -> str:
        return next(answers)

    clock = Clock()
    remembered = Remembered(check, ttl=5.0, clock=clock)
    first = await remembered.get()
    clock.now += 5.0
    assert (first, await remembered.get()) == ("behind (at 0005, head 0007)", "ok")
