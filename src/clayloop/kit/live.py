"""Run an ASGI app on a real loopback socket in a background thread.

Used by the tests, the benchmarks and ``clayloop demo``: every HTTP exchange in
clayloop's own checks goes over a real socket, never an in-process transport.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


class LiveServer:
    """A uvicorn server bound to 127.0.0.1 on a free port, running in its own thread."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY when proto says TCP, and
        # without it Nagle plus delayed ACKs add ~45 ms to every response.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="on", loop="asyncio"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"live-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the server, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self, timeout: float = 15.0) -> LiveServer:
        """Start serving and wait until the server accepts requests."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("live server thread died during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("live server did not start in time")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the server to shut down gracefully and wait for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()


@contextmanager
def live_server(app: Any, *, port: int = 0) -> Iterator[LiveServer]:
    """Context manager form of :class:`LiveServer`."""
    server = LiveServer(app, port=port).start()
    try:
        yield server
    finally:
        server.stop()
