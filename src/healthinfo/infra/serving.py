"""uvicorn, with the app told the moment SIGTERM (or Ctrl-C) arrives.

uvicorn stops accepting connections on a signal, waits for open connections to finish, and
only then runs the lifespan shutdown. Live streams never finish by themselves, so they would
hold the shutdown until the graceful timeout and then be cut. ``exit_hooks`` run first,
synchronously from the signal handler (so they must only schedule work, e.g. with
``loop.call_soon_threadsafe``): the room hub closes every stream with a retry hint, while
requests and WebSocket messages in flight run to completion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import FrameType

import uvicorn


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, exit_hooks: Sequence[Callable[[], None]]) -> None:
        super().__init__(config)
        self._exit_hooks = list(exit_hooks)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            for hook in self._exit_hooks:
                hook()
        super().handle_exit(sig, frame)
