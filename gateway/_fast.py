"""``POST /v1/appointments`` and the hot reads without Quart: a thin ASGI function in
front of the app.

Quart's per-request machinery (request and response objects, contexts, hooks) costs
about a quarter of the CPU a booking takes in this process; on the busiest route
that is the difference between losing to the FastAPI peer and beating it
(``python -m bench.booking``: 842 -> 1,075 bookings/s on one worker). Everything
else goes to the Quart app unchanged.

The hot reads: ``GET /health/live`` (a constant), ``GET /health/ready`` (the readiness
verdict kept in memory, gateway/_ready.py), ``GET /v1/me`` (the access token's claims;
the session check from the guard's memory while it follows session ends), and
``GET /v1/showrooms`` and ``GET /v1/products`` (no query) from the catalogue's
in-process snapshots
(actors/_snapshots.py: at most ``LOMASH_CATALOGUE_MEMORY_S`` old), encoded once per
snapshot with the same view functions the Quart routes use; a request that finds no
fresh snapshot goes to the Quart route, whose ask to the catalogue keeps a new one.
And ``GET /v1/appointments/availability``: the Quart route's own parsing and view
around the same ask to the catalogue (whose memory answers a warm week,
actors/_availability_memory.py), for a query of known parameters, each given once, in
plain ASCII; any other query goes to the Quart route.

The route keeps the contract every route has: an ``X-Request-ID`` (the caller's or a
new one), one canonical log line, errors as the same JSON through the same table,
``Retry-After`` on 503, ``Connection: close`` while draining, 413 past
``max_body_bytes``, and never a traceback. And the accounts' rules: an access token
(``Authorization: Bearer``) makes the booking the account's (an invalid one is a 401,
never a silent guest booking), and the client's address and account are rate limited
(429 with ``Retry-After`` and ``RateLimit-*``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import structlog
import trio

from actors import BookReply
from actors._snapshots import Snapshot, Snapshots
from config import BookingSettings
from gateway._accounts import me_view
from gateway._app import LIVE, REQUEST_ID_KEY, Lifecycle, log_request, request_id
from gateway._appointments import (
    AVAILABILITY_PARAMETERS,
    availability_query,
    availability_view,
    book_message,
)
from gateway._asgi import CLOSE, Receive, Scope, Send, header_pairs, send_json
from gateway._auth import AccountGuard
from gateway._http_errors import error_response
from gateway._metrics import ROUTE_KEY
from gateway._ready import Readiness, ready_answer
from supervisors import (
    ActorRef,
    LomashError,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
)

__all__ = ["ASGIApp", "FastRead", "FastRoutes"]

type ASGIApp = Callable[..., Awaitable[None]]  # QuartTrio, or this wrapper

log = structlog.get_logger("gateway")

_NO_STORE = (b"cache-control", b"no-store")  # answers carry a manage token
_AVAILABILITY = "/v1/appointments/availability"
_ENCODER = msgspec.json.Encoder()
_LIVE = _ENCODER.encode(LIVE)
_READY = _ENCODER.encode(ready_answer(False, "ok")[1])


@dataclass(frozen=True, slots=True)
class FastRead:
    """A ``GET`` answered from the catalogue snapshot ``key``, through ``view`` (the
    Quart route's own), with the route's ``headers``; renewed by asking ``message``."""

    key: str
    view: Callable[[Any], Any]
    # The catalogue's message whose answer the actor keeps as this snapshot.
    message: Callable[[], Any]
    headers: dict[str, str] = field(default_factory=dict)


class FastRoutes:
    def __init__(
        self,
        app: ASGIApp,
        booker: ActorRef[Any, Any],
        lifecycle: Lifecycle,
        guard: AccountGuard,
        *,
        max_body_bytes: int,
        retry_after_s: float,
        body_timeout_s: float,
        snapshots: Snapshots | None = None,
        reads: dict[str, FastRead] | None = None,
        catalogue: ActorRef[Any, Any] | None = None,
        readiness: Readiness | None = None,
        booking: BookingSettings | None = None,
    ) -> None:
        self._app = app
        self._booking = booking
        self._readiness = readiness
        self._snapshots = snapshots
        self._reads = reads or {}
        self._catalogue = catalogue
        self._encoded: dict[str, tuple[Snapshot, bytes]] = {}
        self._renewing: set[str] = set()
        self._booker = booker
        self._lifecycle = lifecycle
        self._guard = guard
        self._max_body_bytes = max_body_bytes
        self._retry_after_s = retry_after_s
        self._body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/v1/appointments":
            scope[ROUTE_KEY] = path
            if scope["method"] == "POST":
                await self._book(scope, receive, send)
            else:
                await self._not_allowed(scope, send)
        elif scope["method"] != "GET":
            await self._app(scope, receive, send)
        elif path == _AVAILABILITY and (args := self._availability_args(scope)) is not None:
            await self._availability(scope, send, args)
        elif scope["query_string"]:
            await self._app(scope, receive, send)
        elif path == "/health/live":
            await self._answer(scope, send, path, _LIVE, {})
        elif path == "/health/ready" and self._readiness is not None:
            await self._ready(scope, send)
        elif path == "/v1/me":
            await self._me(scope, send)
        elif (read := self._reads.get(path)) is not None and (
            body := await self._fresh(path, read)
        ):
            await self._answer(scope, send, path, body, read.headers)
        else:
            await self._app(scope, receive, send)

    async def _fresh(self, path: str, read: FastRead) -> bytes | None:
        """The encoded answer of a fresh snapshot (encoded once per snapshot), renewed
        first by this request if it is due and no other request is renewing it."""
        snapshots = self._snapshots
        snapshot = snapshots.fresh(read.key) if snapshots is not None else None
        if snapshot is None:
            return None
        assert snapshots is not None
        if snapshots.due(snapshot) and read.key not in self._renewing and self._catalogue:
            self._renewing.add(read.key)
            try:
                await self._catalogue.ask(read.message())  # the actor keeps the answer
            except LomashError as error:  # the copy serves on within its bound
                log.info("snapshot_not_renewed", key=read.key, error=error.message)
            finally:
                self._renewing.discard(read.key)
            snapshot = snapshots.fresh(read.key)
            if snapshot is None:
                return None
        encoded = self._encoded.get(path)
        if encoded is None or encoded[0] is not snapshot:
            encoded = (snapshot, _ENCODER.encode(read.view(snapshot.value)))
            self._encoded[path] = encoded
        return encoded[1]

    async def _me(self, scope: Scope, send: Send) -> None:
        """The caller's account, from its access token (the session check usually
        answered from the guard's memory): no Quart, no round trip on a warm hit."""
        started = time.perf_counter()
        scope[ROUTE_KEY] = "/v1/me"
        headers = _headers(scope)
        rid = scope.get(REQUEST_ID_KEY) or request_id(headers.get("x-request-id"))
        extra: dict[str, str] = {}
        try:
            identity = await self._guard.required(headers.get("authorization"))
            status, content = 200, _ENCODER.encode(me_view(identity))
        except Exception as error:  # every failure answers in the one error format
            status, content, extra = self._error(error, rid)
        try:
            # no-store on the account's data, as the Quart route (not on its errors)
            await self._respond(send, status, content, rid, extra, no_store=status == 200)
        finally:
            log_request("GET", "/v1/me", status, started, rid=rid)

    def _availability_args(self, scope: Scope) -> dict[str, str] | None:
        """The query's parameters, if this route can answer it (see the module)."""
        if self._booking is None or self._catalogue is None:
            return None
        try:
            text = scope["query_string"].decode("ascii")
        except UnicodeDecodeError:
            return None
        pairs = parse_qsl(text, keep_blank_values=True)
        args = dict(pairs)
        if len(args) < len(pairs) or not args.keys() <= AVAILABILITY_PARAMETERS:
            return None
        if not all(value.isascii() and value.isprintable() for value in args.values()):
            return None
        return args

    async def _availability(self, scope: Scope, send: Send, args: dict[str, str]) -> None:
        assert self._booking is not None
        assert self._catalogue is not None
        started = time.perf_counter()
        scope[ROUTE_KEY] = _AVAILABILITY
        rid = scope.get(REQUEST_ID_KEY) or request_id(_headers(scope).get("x-request-id"))
        extra: dict[str, str] = {}
        try:
            first, last, message = availability_query(args, self._booking)
            slots = [] if message is None else await self._catalogue.ask(message)
            status, content = 200, _ENCODER.encode(availability_view(first, last, slots))
        except Exception as error:  # every failure answers in the one error format
            status, content, extra = self._error(error, rid)
        try:
            await self._respond(send, status, content, rid, extra, no_store=False)
        finally:
            log_request("GET", _AVAILABILITY, status, started, rid=rid)

    async def _ready(self, scope: Scope, send: Send) -> None:
        assert self._readiness is not None
        started = time.perf_counter()
        draining = self._lifecycle.draining
        database = None if draining else await self._readiness.database()
        status, document = ready_answer(draining, database)
        body = _READY if status == 200 else _ENCODER.encode(document)
        await self._answer(scope, send, "/health/ready", body, {}, status=status, started=started)

    async def _answer(
        self,
        scope: Scope,
        send: Send,
        path: str,
        body: bytes,
        headers: dict[str, str],
        *,
        status: int = 200,
        started: float | None = None,
    ) -> None:
        """An answer to a read with no body to read, logged like every request."""
        started = time.perf_counter() if started is None else started
        scope[ROUTE_KEY] = path
        rid = scope.get(REQUEST_ID_KEY) or request_id(_headers(scope).get("x-request-id"))
        pairs = [(b"x-request-id", rid.encode()), *header_pairs(headers)]
        if self._lifecycle.draining:
            pairs.append(CLOSE)
        try:
            await send_json(send, status, body, pairs)
        finally:  # nothing else logs here: the id goes on the line, not in the context
            log_request("GET", path, status, started, rid=rid)

    async def _not_allowed(self, scope: Scope, send: Send) -> None:
        started = time.perf_counter()
        rid = request_id(_headers(scope).get("x-request-id"))
        with structlog.contextvars.bound_contextvars(request_id=rid):
            status, content, extra = self._error(
                MethodNotAllowed(scope["method"], allowed=("POST",)), rid
            )
            # Logged before the answer: it may wait for a body to be drained.
            log_request(scope["method"], "/v1/appointments", status, started)
            await self._respond(send, status, content, rid, extra)

    async def _book(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = _headers(scope)
        rid = request_id(headers.get("x-request-id"))
        with structlog.contextvars.bound_contextvars(request_id=rid):
            extra: dict[str, str] = {}
            try:
                # The body first: a connection waiting for one is "stalled", closable at
                # the connection cap, from the start (gateway/_connections.py).
                with trio.fail_after(self._body_timeout_s):
                    body = await self._body(receive, headers)
                identity = await self._guard.identity(headers.get("authorization"))
                account_id = None if identity is None else identity.account_id
                client = scope.get("client")
                peer = client[0] if client else None
                where = self._guard.client(peer, headers.get("x-forwarded-for"))
                extra = await self._guard.limit("booking", where, account_id)
                message = book_message(
                    headers.get("idempotency-key"),
                    headers.get("content-type", ""),
                    body,
                    account_id,
                )
                reply: BookReply = await self._booker.ask(message)
                status, content = reply.status, reply.body.encode()
                if status >= 400:  # a stored refusal (409 slot_taken): this request's id
                    content = _with_request_id(content, rid)
            except trio.TooSlowError:
                status, content, error_headers = self._error(
                    RequestTimeout(timeout_s=self._body_timeout_s), rid
                )
                extra = {**extra, **error_headers}
            except Exception as error:  # every failure answers in the one error format
                status, content, error_headers = self._error(error, rid)
                extra = {**extra, **error_headers}
            try:
                await self._respond(send, status, content, rid, extra)
            finally:  # logged even when the client has gone
                log_request("POST", "/v1/appointments", status, started)

    async def _body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            raise PayloadTooLarge(limit=self._max_body_bytes)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body_bytes:
                raise PayloadTooLarge(limit=self._max_body_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _error(self, error: Exception, rid: str) -> tuple[int, bytes, dict[str, str]]:
        mapped = error_response(error, default_retry_after_s=self._retry_after_s)
        if not isinstance(error, LomashError):
            log.error("unhandled_error", error_type=type(error).__name__, exc_info=error)
        elif mapped.status >= 500:
            log.warning("request_failed", error_type=type(error).__name__, error=error.message)
        return mapped.status, _ENCODER.encode(mapped.body(rid)), mapped.headers()

    async def _respond(
        self,
        send: Send,
        status: int,
        content: bytes,
        rid: str,
        extra: dict[str, str],
        *,
        no_store: bool = True,
    ) -> None:
        headers = [(b"x-request-id", rid.encode()), *header_pairs(extra)]
        if no_store:
            headers.insert(0, _NO_STORE)
        if self._lifecycle.draining:
            headers.append(CLOSE)
        await send_json(send, status, content, headers)


_DECODER = msgspec.json.Decoder()


def _with_request_id(content: bytes, rid: str) -> bytes:
    """An error body of the booker (stored without one) in the table's shape, with
    this request's ``request_id`` (a replayed refusal carries the replay's id)."""
    body = _DECODER.decode(content)
    body["error"]["request_id"] = rid
    return _ENCODER.encode(body)


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers, names lower-case (the last of repeated ones)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
