"""The booking route served in front of Quart keeps the contract of every route."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import trio

from actors import Book, BookReply
from config import AuthSettings, RateLimitSettings
from gateway._app import Lifecycle
from gateway._auth import AccountGuard
from gateway._fast import FastRoutes
from supervisors import ActorSpec, SupervisorSpec, open_supervisor
from tests._booking import booking_body, local, next_weekday
from tests._caches import UntouchedCache

START = local(next_weekday(0), 10)  # the fake booker does not look at the date
BODY = json.dumps(booking_body(START)).encode()


class Booker:
    """Answers every booking with 201, or crashes when the notes say so."""

    def __init__(self) -> None:
        self.seen: list[Book] = []

    async def handle(self, message: Book) -> BookReply:
        self.seen.append(message)
        if message.request.notes == "crash":
            raise RuntimeError("a bug with a secret in it")
        return BookReply(201, '{"status": "CONFIRMED"}')


async def call(
    app: FastRoutes,
    *,
    path: str = "/v1/appointments",
    headers: dict[str, str] | None = None,
    chunks: tuple[bytes, ...] = (BODY,),
) -> tuple[int, dict[str, str], Any]:
    """One request through the ASGI app: (status, headers, JSON body)."""
    given = {"content-type": "application/json", "idempotency-key": "k1", **(headers or {})}
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in given.items()],
    }
    incoming = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    if not sent:  # handed to the app behind
        return 0, {}, None
    start, body = sent
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], response_headers, json.loads(body["body"])


async def test_the_booking_route_keeps_the_common_http_contract() -> None:
    """The fast booking route keeps every route's contract: request id, error shape, 413."""
    behaviour = Booker()
    spec: ActorSpec[Book, BookReply] = ActorSpec("booker", lambda: behaviour)
    forwarded: list[str] = []

    async def quart(scope: Any, receive: Any, send: Any) -> None:
        forwarded.append(scope["path"])

    lifecycle = Lifecycle()
    guard = AccountGuard(
        AuthSettings(rate_limits=RateLimitSettings(enabled=False)), UntouchedCache()
    )
    app = FastRoutes(
        quart,
        spec.ref,
        lifecycle,
        guard,
        max_body_bytes=len(BODY) + 50,
        retry_after_s=5,
        body_timeout_s=5,
    )
    with trio.fail_after(10):
        async with open_supervisor(SupervisorSpec("t", [spec])):
            ok = await call(app, headers={"x-request-id": "abc-123"})
            generated = await call(app)
            wrong_type = await call(app, headers={"content-type": "text/plain"})
            no_key = await call(app, headers={"idempotency-key": ""})
            too_big = await call(app, chunks=(BODY, b" " * 200))
            lifecycle.draining = True
            crashed = await call(
                app,
                chunks=(json.dumps(booking_body(START, notes="crash")).encode(),),
            )
            await call(app, path="/v1/showrooms")
    assert ok[0] == 201
    assert ok[1]["x-request-id"] == "abc-123"
    assert ok[2] == {"status": "CONFIRMED"}
    assert len(generated[1]["x-request-id"]) == 32
    assert behaviour.seen[0].idempotency_key == "k1"
    assert (wrong_type[0], wrong_type[2]["error"]["code"]) == (415, "unsupported_media_type")
    assert wrong_type[2]["error"]["request_id"] == wrong_type[1]["x-request-id"]
    assert (no_key[0], no_key[2]["error"]["code"]) == (400, "invalid_idempotency_key")
    assert (too_big[0], too_big[2]["error"]["code"]) == (413, "payload_too_large")
    assert crashed[0] == 500
    assert crashed[2]["error"]["code"] == "internal_error"
    assert "secret" not in json.dumps(crashed[2])
    assert crashed[1]["connection"] == "close"  # draining: the client reconnects elsewhere
    assert "connection" not in ok[1]
    assert forwarded == ["/v1/showrooms"]
