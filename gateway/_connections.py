"""Connections of one HTTP server, whichever driver serves them: the connection cap
(``ConnectionLimiter``), the 503 for a newcomer past it, and the current connection
of a request (so the edge can mark it as only waiting for its body)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import trio

__all__ = ["CURRENT_CONNECTION", "ConnectionLimiter", "shed", "waiting_for_body"]

_SHED_BODY = (
    b'{"error":{"code":"overloaded","message":"too many connections right now, please retry"}}'
)


# The connection whose task (or whose request's task) is running: set by each
# connection's task, inherited by the request tasks it spawns.
CURRENT_CONNECTION: ContextVar[Any] = ContextVar("lomash_http_connection", default=None)


@contextmanager
def waiting_for_body() -> Iterator[None]:
    """While inside, the current request waits for body bytes: at the connection cap
    its connection may be closed to make room (it is not doing anything)."""
    connection = CURRENT_CONNECTION.get()
    if connection is None:  # not served by serve_http (an in-process test)
        yield
        return
    connection.limiter.stalled(connection)
    try:
        yield
    finally:
        connection.limiter.not_stalled(connection)


class ConnectionLimiter:
    """Open connections of one server, and which of them could be closed to make room:
    the idle ones and those waiting for a request body (each oldest first)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.shed = 0
        self.draining = False
        self.evicted = 0
        # Insertion-ordered: the first entry is the one idle (or waiting) the longest;
        # the value is what to cancel to close it.
        self._idle: dict[Any, trio.CancelScope] = {}
        self._stalled: dict[Any, trio.CancelScope] = {}

    def admit(self) -> bool:
        """Room for one more connection, closing an idle or stalled one if needed."""
        if self.open < self.limit:
            return True
        for waiting in (self._idle, self._stalled):
            if waiting:
                oldest = next(iter(waiting))
                waiting.pop(oldest).cancel()
                self.evicted += 1
                return True  # it closes on its own task; the count drops then
        self.shed += 1
        return False

    def drain(self) -> None:
        """The server drains: close every idle connection now (and none may go idle)."""
        self.draining = True
        while self._idle:
            self._idle.pop(next(iter(self._idle))).cancel()

    def idle(self, connection: Any, scope: trio.CancelScope) -> None:
        self._idle[connection] = scope

    def stalled(self, connection: Any) -> None:
        self._stalled[connection] = connection.aborting

    def not_idle(self, connection: Any) -> None:
        self._idle.pop(connection, None)

    def not_stalled(self, connection: Any) -> None:
        self._stalled.pop(connection, None)

    def closed(self, connection: Any) -> None:
        self.not_idle(connection)
        self.not_stalled(connection)


async def shed(stream: trio.SocketStream, retry_after_s: float, timeout_s: float) -> None:
    """503 and close, without reading the request: the connection cap is reached."""
    head = (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        b"retry-after: %d\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
        % (max(1, math.ceil(retry_after_s)), len(_SHED_BODY))
    )
    with trio.move_on_after(timeout_s):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(head + _SHED_BODY)
    with trio.move_on_after(timeout_s, shield=True):
        await stream.aclose()
