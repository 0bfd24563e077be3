"""uvicorn, with the app told the moment SIGTERM (or Ctrl-C) arrives.

uvicorn stops accepting connections on a signal, waits for open connections to finish, and
only then runs the lifespan shutdown. Live streams never finish by themselves, so they would
hold the shutdown until the graceful timeout and then be cut. ``exit_hooks`` run first,
synchronously from the signal handler (so they must only schedule work, e.g. with
``loop.call_soon_threadsafe``): the room hub closes every stream with a retry hint, while
requests and WebSocket messages in flight run to completion.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from functools import partial
from socket import socket
from types import FrameType

import uvicorn
from uvicorn.supervisors import multiprocess


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, exit_hooks: Sequence[Callable[[], None]]) -> None:
        super().__init__(config)
        self._exit_hooks = list(exit_hooks)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            for hook in self._exit_hooks:
                hook()
        super().handle_exit(sig, frame)


_SERVER_LOCK = threading.Lock()


class WorkerProcess(multiprocess.Process):
    """One of ``serve --workers N``'s processes, running our server rather than uvicorn's.

    The server (and the app in it) is built in the child, by ``factory``, from the environment:
    nothing of the parent's app crosses the process boundary, and each worker's SIGTERM runs its
    own app's exit hooks (a plain uvicorn worker would hold live streams until the graceful
    timeout). uvicorn's health-check thread and the serving thread both ask for the server, so
    it is built once, under a lock.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        sockets: list[socket],
        *,
        factory: Callable[[], uvicorn.Server],
    ) -> None:
        self._factory = factory
        super().__init__(config, sockets)

    @property
    def server(self) -> uvicorn.Server:
        with _SERVER_LOCK:
            if self._server is None:
                self._server = self._factory()
            return self._server


def run_workers(config: uvicorn.Config, factory: Callable[[], uvicorn.Server]) -> None:
    """uvicorn's supervisor (restarts dead workers, SIGTTIN/SIGTTOU, SIGHUP) over our workers.

    uvicorn names its worker class as a module global; it is swapped for ours for as long as
    the supervisor runs, which is the rest of this process's life.
    """
    sock = config.bind_socket()
    original = multiprocess.Process
    multiprocess.Process = partial(WorkerProcess, factory=factory)  # type: ignore[misc,assignment]
    try:
        multiprocess.Multiprocess(config, sockets=[sock]).run()
    finally:
        multiprocess.Process = original  # type: ignore[misc]
        sock.close()


def proxy_options(trusted_proxies: Sequence[str]) -> tuple[bool, list[str]]:
    """uvicorn's ``proxy_headers`` and ``forwarded_allow_ips`` from HEALTHINFO_TRUSTED_PROXIES.

    uvicorn's own default believes X-Forwarded-For from 127.0.0.1, or from whatever its
    ``FORWARDED_ALLOW_IPS`` variable says; we pass the setting instead (default: trust nobody),
    so nothing outside the validated configuration decides which client address the audit
    trail and the rate limits see.
    """
    return bool(trusted_proxies), list(trusted_proxies)


def http_protocol(max_header_bytes: int) -> type[asyncio.Protocol] | str:
    """The HTTP/1.1 implementation, bounding the request line and headers: 431 beyond.

    h11 has a bound of its own (``h11_max_incomplete_event_size``, passed too); httptools,
    which uvicorn prefers when installed, has none, so its protocol is replaced by one that
    counts (``infra/bounded_http.py``).
    """
    try:
        from healthinfo.infra.bounded_http import bounded_httptools_protocol
    except ImportError:  # no httptools: h11, with its own limit
        return "h11"
    return bounded_httptools_protocol(max_header_bytes)
