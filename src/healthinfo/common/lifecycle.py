"""Background components that start with the app and stop with it (relay, bus, warmers)."""

from __future__ import annotations

from typing import Protocol


class Lifecycle(Protocol):
    """Started in registration order after migrations; stopped in reverse order."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
