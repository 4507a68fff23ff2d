"""The lean HTTP/1.1 driver: h11 on trio, one task per connection, nothing per request.

hypercorn's trio worker spends most of a trivial request on its own glue (a task and a
nursery spawned per request, the idle-timeout task restarted per request, a send
lock, a cancel scope per protocol event): bench/driver.py measures the same app at
about 4x the requests/s behind a bare h11 loop. This driver is that loop with the
protections ``serve_http`` gives, chosen by ``LOMASH_HTTP_DRIVER=lean``:

- h11's strictness: a malformed request, ambiguous framing or headers over
  ``MAX_HEADER_BYTES`` is answered 400 (431 for the size) and the connection closed;
- keep-alive and pipelining: requests on one connection are answered in order, the
  next one read only once the answer is out; HTTP/1.0 and ``Connection: close`` close
  after the answer;
- slow clients: the request head must have arrived ``keep_alive_s`` after the
  connection went idle (slowloris), a response chunk must be written within
  ``send_timeout_s`` (a client that does not read is disconnected), and the body's own
  deadline stays the edge guard's (``body_timeout_s``);
- the connection cap (``ConnectionLimiter``): idle connections and those waiting for a
  body are closed to make room, else the newcomer gets 503 + Retry-After;
- half-closed connections: a client's EOF ends the connection once what it sent is
  answered; the app hears ``http.disconnect`` if it asks after the client left;
- drain: the listeners close, idle connections close at once, answers in flight get
  ``Connection: close`` and ``graceful_timeout`` to finish, then are cut.

The app runs in the connection's task. Its ``receive`` reads the socket on demand:
body bytes while the body lasts, then (quart-trio waits for a disconnect) the socket
for EOF, buffering at most ``MAX_HEADER_BYTES`` of a pipelined next request.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any
from urllib.parse import unquote

import h11
import structlog
import trio
from hypercorn.utils import parse_socket_addr

from config import HttpSettings
from gateway._asgi import App, Message, Scope
from gateway._connections import CURRENT_CONNECTION, ConnectionLimiter

__all__ = ["MAX_HEADER_BYTES", "LeanConnection"]

log = structlog.get_logger("gateway.http")

# hypercorn's h11_max_incomplete_size: a request head (or an unread pipelined one)
# may not be larger.
MAX_HEADER_BYTES = 16 * 1024
_READ_BYTES = 65536
_NO_BODY_STATUSES = frozenset({204, 304})
_DISCONNECT: Message = {"type": "http.disconnect"}
_ERROR_HEADERS = [(b"content-length", b"0"), (b"connection", b"close")]


class _Cut(Exception):
    """The connection cannot go on (broken, not read, or answered out of order)."""


class LeanConnection:
    """One client connection: read a request, run the app on it, answer, repeat."""

    def __init__(
        self,
        app: App,
        stream: trio.SocketStream,
        http: HttpSettings,
        limiter: ConnectionLimiter,
        state: dict[str, Any],
    ) -> None:
        self.app = app
        self.stream = stream
        self.http = http
        self.limiter = limiter
        self.state = state
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        # Cancelled to close the connection at once (the limiter making room, drain);
        # ``waiting_for_body`` hands it to the limiter while a body is awaited.
        self.aborting = trio.CancelScope()
        self.client: Any = None
        self.server: Any = None
        self._fd = stream.socket.fileno()
        self._peer_closed = False
        # One reader of the socket at a time (quart-trio's body reader and the edge's
        # drain may both receive); the others wait their turn, as on a queue.
        self._reading = False
        self._turns = trio.lowlevel.ParkingLot()

    async def run(self) -> None:
        CURRENT_CONNECTION.set(self)
        socket = self.stream.socket
        try:
            self.client = parse_socket_addr(socket.family, socket.getpeername())
            self.server = parse_socket_addr(socket.family, socket.getsockname())
            with self.aborting:
                while True:
                    request = await self._next_request()
                    if request is None:
                        return
                    await _Exchange(self, request).run()
                    if not self._request_ended():
                        return
                    self.h11.start_next_cycle()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, _Cut):
            pass
        finally:
            self.limiter.closed(self)
            with trio.move_on_after(self.http.send_timeout_s, shield=True):
                await self.stream.aclose()

    async def _next_request(self) -> h11.Request | None:
        """The next request's head, or None once the connection should close.

        From the moment the connection goes idle the whole head must arrive within
        ``keep_alive_s`` (the deadline of ``aborting``, the connection's one scope);
        idle (nothing of a request buffered) it may be closed to make room or for
        drain."""
        aborting = self.aborting
        aborting.deadline = trio.current_time() + self.http.keep_alive_s
        pipelined = True
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as error:
                await self._refuse(error.error_status_hint)
                return None
            if isinstance(event, h11.Request):
                aborting.deadline = math.inf
                if _head_bytes(event) > MAX_HEADER_BYTES:
                    await self._refuse(431)
                    return None
                if pipelined:  # already buffered: let other connections run first
                    await trio.lowlevel.checkpoint()
                return event
            if event is not h11.NEED_DATA or self._peer_closed:
                return None  # ConnectionClosed, or EOF before a whole head
            pipelined = False
            if not await self._read_while_idle():
                return None

    def _request_ended(self) -> bool:
        """Answered, and the request read to its end (a bodiless one has its end in
        the buffer already; a body the app left unread closes the connection)."""
        h11_connection = self.h11
        if h11_connection.our_state is not h11.DONE:
            return False
        with contextlib.suppress(h11.RemoteProtocolError):
            while h11_connection.their_state is h11.SEND_BODY:
                if h11_connection.next_event() is h11.NEED_DATA:
                    return False
        return h11_connection.their_state is h11.DONE

    async def _read_while_idle(self) -> bool:
        """Read more of the next request; False if the connection should close."""
        idle = not self.h11.trailing_data[0]
        if not idle:
            return self._feed(await self.stream.receive_some(_READ_BYTES))
        if self.limiter.draining:
            return False
        self.limiter.idle(self, self.aborting)  # closed to make room, or for drain
        try:
            return self._feed(await self.stream.receive_some(_READ_BYTES))
        finally:
            self.limiter.not_idle(self)

    def _feed(self, data: bytes) -> bool:
        self.h11.receive_data(data)
        if not data:
            self._peer_closed = True
        return True

    async def _refuse(self, status: int) -> None:
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        with contextlib.suppress(h11.LocalProtocolError):
            head = self.h11.send(h11.Response(status_code=status, headers=_ERROR_HEADERS))
            await self.send_all((head or b"") + (self.h11.send(h11.EndOfMessage()) or b""))

    async def send_all(self, data: bytes) -> None:
        """Write ``data`` whole, even if the app is being cancelled meanwhile (a half
        written answer would leave the connection unusable), within ``send_timeout_s``.

        Straight to the socket first: an answer that fits the kernel's buffer (nearly
        every one) costs no scope and no wait; the rest is written as trio does."""
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as error:
            raise _Cut("the connection is gone") from error
        if sent == len(data):
            return
        with trio.move_on_after(self.http.send_timeout_s, shield=True) as writing:
            await self.stream.send_all(memoryview(data)[sent:])
        if writing.cancelled_caught:
            log.info("http_client_not_reading", timeout_s=self.http.send_timeout_s)
            raise _Cut("the client does not read")

    async def take_turn(self) -> None:
        while self._reading:
            await self._turns.park()
        self._reading = True

    def end_turn(self) -> None:
        self._reading = False
        self._turns.unpark()

    async def read_more(self) -> bool:
        """Read from the socket into h11 (while a body or a disconnect is awaited);
        False at EOF."""
        if self._peer_closed:
            return False
        data = await self.stream.receive_some(_READ_BYTES)
        self._feed(data)
        return bool(data)


def _head_bytes(request: h11.Request) -> int:
    """About the size of a request head as sent (h11 holds back only an incomplete
    head over its limit; a whole one that came in one read is not checked)."""
    return len(request.target) + sum(len(name) + len(value) + 4 for name, value in request.headers)


class _Exchange:
    """One request and its answer: the ASGI ``scope``, ``receive`` and ``send``."""

    def __init__(self, connection: LeanConnection, request: h11.Request) -> None:
        self.connection = connection
        self.request = request
        self.method = request.method.decode("ascii").upper()
        self.started = False
        self.finished = False
        self.body_done = False
        self.status = 0
        self.head = b""
        self.suppress_body = self.method == "HEAD"

    def scope(self) -> Scope:
        request = self.request
        path, _, query = request.target.partition(b"?")
        return {
            "type": "http",
            "http_version": request.http_version.decode(),
            "asgi": {"spec_version": "2.1", "version": "3.0"},
            "method": self.method,
            "scheme": "http",
            "path": unquote(path.decode("ascii")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": list(request.headers),
            "client": self.connection.client,
            "server": self.connection.server,
            "state": self.connection.state.copy(),
            "extensions": {},
        }

    async def run(self) -> None:
        connection = self.connection
        try:
            await connection.app(self.scope(), self.receive, self.send)
        except Exception:
            log.exception("http_app_failed", method=self.method)
        if not self.started:
            await connection._refuse(500)
        elif not self.finished:
            raise _Cut("the app ended before its answer did")

    async def receive(self) -> Message:
        await self.connection.take_turn()
        try:
            return await self._receive()
        finally:
            self.connection.end_turn()

    async def _receive(self) -> Message:
        connection = self.connection
        if self.finished:
            return _DISCONNECT
        if self.body_done:
            # Quart-trio waits here for the client to leave. A reset is a disconnect;
            # an EOF is not (a half-closed client still reads its answer: the request
            # stays bounded by its own deadline). A pipelined next request is kept,
            # bounded, for after this answer.
            try:
                while len(connection.h11.trailing_data[0]) <= MAX_HEADER_BYTES:
                    if not await connection.read_more():
                        break
            except (OSError, trio.BrokenResourceError):
                return _DISCONNECT
            await trio.sleep_forever()
        h11_connection = connection.h11
        if h11_connection.they_are_waiting_for_100_continue and not self.started:
            await connection.send_all(
                h11_connection.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )
        while True:
            try:
                event = h11_connection.next_event()
            except h11.RemoteProtocolError:
                return _DISCONNECT  # malformed body framing: h11 has closed the cycle
            if isinstance(event, h11.Data):
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            if isinstance(event, h11.EndOfMessage):
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if event is h11.NEED_DATA:
                if not await connection.read_more():
                    return _DISCONNECT
                continue
            return _DISCONNECT

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.started:
            self.started = True
            self.status = int(message["status"])
            headers = list(message.get("headers", ()))
            if self.connection.limiter.draining:
                headers.append((b"connection", b"close"))
            self.suppress_body = self.suppress_body or self.status in _NO_BODY_STATUSES
            response = h11.Response(status_code=self.status, headers=headers)
            # Held back until the first body chunk: one write per whole answer.
            self.head = self.connection.h11.send(response) or b""
        elif kind == "http.response.body" and self.started and not self.finished:
            body = b"" if self.suppress_body else message.get("body", b"")
            more = bool(message.get("more_body", False))
            h11_connection = self.connection.h11
            data, self.head = self.head, b""
            if body:
                data += h11_connection.send(h11.Data(data=body)) or b""
            if not more:
                self.finished = True
                data += h11_connection.send(h11.EndOfMessage()) or b""
            if data:
                await self.connection.send_all(data)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} at this point of the answer")
