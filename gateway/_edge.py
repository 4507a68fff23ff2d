"""ASGI middleware in front of every route: what HTTP/1.1 needs from a careful server.

- **A body is never held past the limit.** Once more than ``max_body_bytes`` of a
  body has arrived (chunked bodies have no declared length to refuse up front), the
  app hears a disconnect at its next read, nothing more is read, and the client gets
  413 and a closed connection (quart-trio would otherwise queue a chunked body in
  memory until its end).
- **An early answer drains the body.** A route may answer before the request body
  has arrived (a 404, 405 or 401 to a POST). Its answer (status line included) is held
  until the rest of the body has been read and discarded (within ``max_body_bytes``,
  until ``body_timeout_s`` after the request began), so the connection stays usable
  for the next request and the client is not reset mid-upload. Past either bound the
  answer goes out with ``Connection: close``.
- **Ambiguous framing closes the connection.** A request with both
  ``Content-Length`` and ``Transfer-Encoding`` is answered with ``Connection: close``
  (RFC 9112 section 6.1: request smuggling).
- While a request waits for its body, its connection may be closed to make room for
  a newcomer when the connection cap is reached (gateway/_connections.py).
"""

from __future__ import annotations

import msgspec
import trio

from gateway._asgi import CLOSE, App, Message, Receive, Scope, Send, send_json
from gateway._connections import waiting_for_body
from gateway._http_errors import error_response
from supervisors import PayloadTooLarge

__all__ = ["EdgeGuard"]

_ENCODER = msgspec.json.Encoder()
# An early answer up to this size is held whole until the body is drained.
_HOLD_BYTES = 64 * 1024


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
        if exchange.overflowed and not exchange.answered:
            await exchange.too_large()


class _Exchange:
    """One request: how much of its body has been read, and its response's end."""

    __slots__ = (
        "_deadline",
        "_held",
        "_limit",
        "_receive",
        "_send",
        "_size",
        "_waiter",
        "ambiguous",
        "answered",
        "overflowed",
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
        self._held: list[Message] = []  # the answer, waiting for the body to be read
        self.answered = False
        self.overflowed = False
        length = chunked = has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = True
                has_body = value.strip() not in (b"", b"0")
            elif name == b"transfer-encoding":
                chunked = True
        self.ambiguous = length and chunked
        # The body has been read to its end (or there is none).
        self.read = not (chunked or (length and has_body))

    async def receive(self) -> Message:
        if self.overflowed:
            return {"type": "http.disconnect"}  # nothing more is read past the limit
        if self.read:
            return await self._receive()
        with waiting_for_body():
            message = await self._receive()
        kind = message["type"]
        if kind == "http.request":
            self._size += len(message.get("body", b""))
            if self._size > self._limit:
                # This chunk still goes through (the app's own limit check answers
                # 413 on it); the next read is a disconnect. The drain waits no more.
                self.overflowed = True
                self._ended()
            elif not message.get("more_body", False):
                self.read = True
                self._ended()
        elif kind == "http.disconnect":
            self.read = True
            self._ended()
        return message

    def _ended(self) -> None:
        if self._waiter is not None:
            self._waiter.set()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.answered = True
            if self.ambiguous:
                message["headers"] = [*message.get("headers", ()), CLOSE]
        if not self.read and self._holding(message):
            self._held.append(message)  # sent with the body's end, once drained
            if kind == "http.response.body" and not message.get("more_body", False):
                await self._drain()
                await self._release()
            return
        await self._release()
        await self._send(message)

    def _holding(self, message: Message) -> bool:
        """Hold the answer while it is small: the start and body chunks up to
        ``_HOLD_BYTES`` (quart-trio sends its body, then an empty last chunk)."""
        held = sum(len(m.get("body", b"")) for m in self._held)
        return held + len(message.get("body", b"")) <= _HOLD_BYTES

    async def _release(self) -> None:
        held, self._held = self._held, []
        if held and not self.read:  # the body was not read to its end: the connection
            start = held[0]  # ends with this answer
            start["headers"] = [*start.get("headers", ()), CLOSE]
        for message in held:
            await self._send(message)

    async def _drain(self) -> None:
        """Read and discard the rest of the body, within the bounds; whoever else reads
        (quart-trio keeps a reader task of its own) counts too."""
        if self.read or self.overflowed:
            return  # nothing more will be read: the answer goes out now
        self._waiter = trio.Event()
        with trio.move_on_at(self._deadline):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._discard)
                await self._waiter.wait()
                nursery.cancel_scope.cancel()

    async def _discard(self) -> None:
        while not self.read and not self.overflowed:
            await self.receive()

    async def too_large(self) -> None:
        """The app stopped at the disconnect it was told of: answer 413 and close."""
        mapped = error_response(PayloadTooLarge(limit=self._limit), default_retry_after_s=0)
        await send_json(self._send, mapped.status, _ENCODER.encode(mapped.body("")), [CLOSE])
