"""Limits on the server's connections: silent or slow clients are dropped, and few are held.

uvicorn's h11 protocol arms a timer only after a response (``timeout_keep_alive``); a client that
connects and sends nothing, or sends its request head a byte at a time, holds a connection
(and a file descriptor) forever: 300 such connections were still open after 75 s. The protocol
here gives every request head ``request_timeout`` seconds from the moment the server starts
waiting for it (the connection opening, or the previous response ending) and closes the
connection when the head is not whole by then. The request body has its own limit in the app
(``server.read_limited_body``), and ``limit_concurrency`` answers 503 beyond a number of open
connections.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from cnnlab.runtime.validate import check_int, check_number

REQUEST_TIMEOUT_S = 10.0  # a whole request head (a few hundred bytes) even over a slow link
UPLOAD_TIMEOUT_S = 120.0  # a whole request body: 1 MB at 10 KB/s takes 100 s
KEEP_ALIVE_S = 5  # uvicorn's default: idle time allowed between requests on one connection
MAX_CONNECTIONS = 500  # within a default 1,024 file descriptors, with room for the database


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head."""

    request_timeout: float = REQUEST_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _watch_head(self) -> None:
        """Arm the deadline while a head is awaited (once, not again on every byte); disarm it
        when a request is being handled."""
        if not self._waiting_for_head():
            self._cancel_deadline()
        elif self._head_deadline is None and not self.transport.is_closing():
            self._head_deadline = self.loop.call_later(self.request_timeout, self._head_too_late)

    def _cancel_deadline(self) -> None:
        if getattr(self, "_head_deadline", None) is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_late(self) -> None:
        self._head_deadline = None
        if self._waiting_for_head() and not self.transport.is_closing():
            self.transport.close()


def timed_protocol(request_timeout: float) -> type[TimedH11Protocol]:
    """The protocol with this deadline: uvicorn takes a class and makes one per connection."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"request_timeout": request_timeout})


def server_config(
    app: Any,
    *,
    client_timeout: float = REQUEST_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
    **options: Any,
) -> uvicorn.Config:
    """uvicorn's config for ``app`` with these limits; ``options`` are uvicorn's own."""
    return uvicorn.Config(
        app,
        http=timed_protocol(client_timeout),
        **uvicorn_limits(client_timeout, max_connections),
        **options,
    )


def uvicorn_limits(client_timeout: float, max_connections: int) -> dict[str, Any]:
    """uvicorn's options for these limits, but the protocol (``timed_protocol``); the limit on
    connections is a process's: each worker of ``quest serve --workers N`` has its own."""
    check_limits(client_timeout, max_connections)
    return {
        "timeout_keep_alive": min(KEEP_ALIVE_S, client_timeout),
        "limit_concurrency": max_connections,
    }


def check_limits(client_timeout: float, max_connections: int) -> None:
    check_number(
        "client_timeout", client_timeout, 0, 3600, "a number of seconds in (0, 3600)", open_low=True
    )
    check_int("max_connections", max_connections, low=1, high=100_000)
