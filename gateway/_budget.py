"""ASGI middleware: every request has an overall budget (``http.request_timeout_s``).

A handler that has not answered when its budget runs out is cancelled (its asks,
its dependency calls: their adapters abandon the work, a transaction is rolled
back) and the client gets 503 ``timeout`` with ``Retry-After``; nothing hangs past
it. The budget counts the handler's time only: while the handler waits for the
request body, the clock stops (the body has its own deadline, ``body_timeout_s``,
answered 408). A booking answered 503 this way was either not written or was
written whole, with its Idempotency-Key: a retry with the same key learns which.

The middleware gives a request without a sane ``X-Request-ID`` a new one before the
app sees it, so the app's log lines and this answer carry the same id.
"""

from __future__ import annotations

import math
import time

import msgspec
import structlog
import trio

from gateway._app import REQUEST_ID_KEY, Lifecycle, log_request, request_id
from gateway._asgi import CLOSE, App, Message, Receive, Scope, Send, header_pairs, send_json
from gateway._http_errors import error_response
from supervisors import DeadlineExceeded

__all__ = ["RequestBudget"]

log = structlog.get_logger("gateway")

_ENCODER = msgspec.json.Encoder()


class RequestBudget:
    def __init__(
        self, app: App, *, timeout_s: float, retry_after_s: float, lifecycle: Lifecycle
    ) -> None:
        self._app = app
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        self._lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _with_request_id(scope)
        answered = False
        body_done = False

        with trio.CancelScope(deadline=trio.current_time() + self._timeout_s) as budget:

            async def receive_paused() -> Message:
                """The body's arrival is not the handler's time: the budget waits for
                it (only for it: a reader waiting for a disconnect after it does not
                stop the clock)."""
                nonlocal body_done
                if body_done:
                    return await receive()
                left = budget.deadline - trio.current_time()
                budget.deadline = math.inf
                try:
                    message = await receive()
                finally:
                    budget.deadline = trio.current_time() + max(left, 0.0)
                body_done = message["type"] != "http.request" or not message.get("more_body")
                return message

            async def send_tracked(message: Message) -> None:
                nonlocal answered
                if message["type"] == "http.response.start":
                    answered = True
                await send(message)

            await self._app(scope, receive_paused, send_tracked)
        if not budget.cancelled_caught:
            return
        log.warning(
            "request_deadline_exceeded",
            request_id=rid,
            path=scope["path"],
            timeout_s=self._timeout_s,
        )
        if answered:
            return  # the answer had begun: the connection ends with what was sent
        await self._deadline_answer(scope, send, rid, started)

    async def _deadline_answer(self, scope: Scope, send: Send, rid: str, started: float) -> None:
        error = DeadlineExceeded(timeout_s=self._timeout_s, retry_after=self._retry_after_s)
        mapped = error_response(error, default_retry_after_s=self._retry_after_s)
        headers = [(b"x-request-id", rid.encode()), *header_pairs(mapped.headers())]
        if self._lifecycle.draining:
            headers.append(CLOSE)
        try:
            await send_json(send, mapped.status, _ENCODER.encode(mapped.body(rid)), headers)
        finally:
            log_request(scope["method"], scope["path"], mapped.status, started)


def _with_request_id(scope: Scope) -> str:
    """The request's id (its last ``X-Request-ID`` if sane, else a new one), made its
    only one."""
    headers: list[tuple[bytes, bytes]] = list(scope["headers"])
    given = next((v for n, v in reversed(headers) if n == b"x-request-id"), None)
    text = given.decode("latin-1") if given is not None else None
    rid = request_id(text)
    headers = [(n, v) for n, v in headers if n != b"x-request-id"]
    headers.append((b"x-request-id", rid.encode()))
    scope["headers"] = headers
    scope[REQUEST_ID_KEY] = rid  # for the layers inside, without a look at the headers
    return rid
