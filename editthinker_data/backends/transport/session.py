"""A remote backend's HTTP session: one event loop in its own thread and one
`httpx.AsyncClient` on it, kept for the backend's life. Each batch runs on that loop, so it
reuses the connections (and TLS sessions) earlier batches opened instead of dialing the
endpoint again: with a client per batch, every batch paid a TCP and TLS handshake per
connection (tens to hundreds of milliseconds to a hosted API) and the endpoint saw a burst
of new connections per batch.

The session starts on first use and is left out when its backend is pickled (a thread and
a loop do not travel), so a backend is set up wherever it runs. It lives as long as its
process: backends have no teardown, and the loop's thread is a daemon."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class HttpSession:
    def __init__(self, name: str, connections: int, timeout_s: float, connect_timeout_s: float | None = None):
        """`connections`: the client's connection cap (the backend's concurrency), also the
        loop's default executor's threads (`asyncio.to_thread`, e.g. cache reads: as many as
        requests in flight, rather than asyncio's default of cpus + 4)."""
        self.name = name
        self.connections = connections
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None

    def run(self, batch: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        """`batch(client)` on the session's loop, from any thread; its result or error."""
        loop = self._started()
        return asyncio.run_coroutine_threadsafe(batch(self._client), loop).result()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                loop.set_default_executor(
                    ThreadPoolExecutor(self.connections, thread_name_prefix=f"{self.name}-io")
                )
                threading.Thread(target=loop.run_forever, name=f"{self.name}-http", daemon=True).start()
                self._client = asyncio.run_coroutine_threadsafe(self._new_client(), loop).result()
                self._loop = loop
            return self._loop

    async def _new_client(self) -> Any:
        import httpx

        limits = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
        timeout = httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s or self.timeout_s)
        return httpx.AsyncClient(timeout=timeout, limits=limits)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_lock=None, _loop=None, _client=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
