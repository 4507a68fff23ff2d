"""ASGI middleware in front of every route: what HTTP/1.1 needs from a careful server.

- **An early answer drains the body.** A route may answer before the request body
  has arrived (a 404, 405 or 401 to a POST). The end of that response is held until
  the rest of the body has been read and discarded (at most ``max_body_bytes``, until
  ``body_timeout_s`` after the request began), so the connection stays usable for the
  next request and the client is not reset mid-upload. Past either bound the answer
  is sent and the connection closed (the protocol closes a connection whose request
  was not read to its end).
- **Ambiguous framing closes the connection.** A request with both
  ``Content-Length`` and ``Transfer-Encoding`` is answered with ``Connection: close``
  (RFC 9112 section 6.1: request smuggling).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

__all__ = ["EdgeGuard"]

type Scope = MutableMapping[str, Any]
type Message = MutableMapping[str, Any]
type Receive = Callable[[], Awaitable[Message]]
type Send = Callable[[Message], Awaitable[None]]
type App = Callable[[Scope, Receive, Send], Awaitable[None]]

_CLOSE = (b"connection", b"close")


class EdgeGuard:
    def __init__(self, app: App, *, max_body_bytes: int, body_timeout_s: float) -> None:
        self._app = app
        self._max_body_bytes = max_body_bytes
        self._body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        exchange = _Exchange(
            scope,
            receive,
            send,
            limit=self._max_body_bytes,
            deadline=trio.current_time() + self._body_timeout_s,
        )
        await self._app(scope, exchange.receive, exchange.send)


class _Exchange:
    """One request: how much of its body has been read, and its response's end."""

    __slots__ = (
        "_deadline",
        "_limit",
        "_receive",
        "_send",
        "_size",
        "_waiter",
        "ambiguous",
        "read",
    )

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, *, limit: int, deadline: float
    ) -> None:
        self._receive = receive
        self._send = send
        self._limit = limit
        self._deadline = deadline
        self._size = 0
        self._waiter: trio.Event | None = None
        length = chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value.strip() not in (b"", b"0")
            elif name == b"transfer-encoding":
                chunked = True
        self.ambiguous = length and chunked
        # The body has been read to its end (or there is none).
        self.read = not (length or chunked)

    async def receive(self) -> Message:
        message = await self._receive()
        if not self.read:
            kind = message["type"]
            if kind == "http.disconnect" or (
                kind == "http.request" and not message.get("more_body", False)
            ):
                self.read = True
                if self._waiter is not None:
                    self._waiter.set()
            elif kind == "http.request":
                self._size += len(message.get("body", b""))
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start" and self.ambiguous:
            message["headers"] = [*message.get("headers", ()), _CLOSE]
        elif kind == "http.response.body" and not self.read and not message.get("more_body"):
            await self._drain()
        await self._send(message)

    async def _drain(self) -> None:
        """Read and discard the rest of the body, within the bounds; whoever else reads
        (quart-trio keeps a reader task of its own) counts too."""
        self._waiter = trio.Event()
        with trio.move_on_at(self._deadline):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._discard, nursery.cancel_scope)
                await self._waiter.wait()
                nursery.cancel_scope.cancel()

    async def _discard(self, done: trio.CancelScope) -> None:
        while not self.read and self._size <= self._limit:
            await self.receive()
        done.cancel()  # over the limit: give up, the connection closes after the answer
