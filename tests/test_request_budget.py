"""The request budget (gateway/_budget.py) on trio's virtual clock, at the ASGI level.

A handler past ``timeout_s`` is cancelled and the client hears 503 ``timeout`` with
Retry-After at exactly that moment; the time the body takes to arrive is not the
handler's; an answer already begun is not replaced.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import trio
import trio.testing

from gateway import Lifecycle, RequestBudget

TIMEOUT_S = 8.0


def scope(headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/v1/things", "headers": headers or []}


class Exchange:
    """What the client side of one ASGI request saw, and when."""

    def __init__(self, body_after_s: float = 0.0) -> None:
        self.sent: list[tuple[float, MutableMapping[str, Any]]] = []
        self._body_after_s = body_after_s
        self._received = False

    async def receive(self) -> dict[str, Any]:
        if self._received:
            await trio.sleep_forever()  # the client neither sends more nor leaves
        self._received = True
        await trio.sleep(self._body_after_s)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append((trio.current_time(), message))

    @property
    def status(self) -> int:
        status: int = self.sent[0][1]["status"]
        return status

    def header(self, name: bytes) -> bytes | None:
        return dict(self.sent[0][1]["headers"]).get(name)


def budget(app: Any) -> RequestBudget:
    return RequestBudget(app, timeout_s=TIMEOUT_S, retry_after_s=5.0, lifecycle=Lifecycle())


async def answer(send: Any, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_a_handler_past_its_budget_is_cancelled_and_answered_503_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """At exactly 8 s: 503 timeout, Retry-After, the request's id; the handler's work
    was cancelled (its cleanup ran) and it never answered itself."""
    cleaned_up: list[float] = []

    async def stuck(scope: Any, receive: Any, send: Any) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cleaned_up.append(trio.current_time())

    exchange = Exchange()
    await budget(stuck)(scope([(b"x-request-id", b"abc-1")]), exchange.receive, exchange.send)
    assert cleaned_up == [TIMEOUT_S]
    assert [at for at, _ in exchange.sent] == [TIMEOUT_S, TIMEOUT_S]
    assert exchange.status == 503
    assert exchange.header(b"retry-after") == b"5"
    assert exchange.header(b"x-request-id") == b"abc-1"
    error = json.loads(exchange.sent[1][1]["body"])["error"]
    assert (error["code"], error["request_id"]) == ("timeout", "abc-1")


async def test_waiting_for_the_body_is_not_the_handlers_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The body arrives after 20 s, the handler then works 7 s: answered at 27 s."""

    async def reads_then_works(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await trio.sleep(7.0)
        await answer(send)

    exchange = Exchange(body_after_s=20.0)
    await budget(reads_then_works)(scope(), exchange.receive, exchange.send)
    assert exchange.status == 200
    assert exchange.sent[0][0] == 27.0


async def test_a_reader_waiting_for_a_disconnect_does_not_stop_the_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """As quart-trio does: a task reads the body, then waits for the disconnect; the
    handler hangs: still 503 at exactly 8 s."""

    async def quart_like(scope: Any, receive: Any, send: Any) -> None:
        async def reader() -> None:
            while True:
                await receive()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep_forever()

    exchange = Exchange()
    await budget(quart_like)(scope(), exchange.receive, exchange.send)
    assert (exchange.status, exchange.sent[0][0]) == (503, TIMEOUT_S)


async def test_the_app_sees_the_same_request_id_the_deadline_answer_carries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No (or an insane) X-Request-ID: one is made before the app runs, and it is the
    only one the app sees."""
    seen: list[list[bytes]] = []

    async def stuck(scope: Any, receive: Any, send: Any) -> None:
        seen.append([v for n, v in scope["headers"] if n == b"x-request-id"])
        await trio.sleep_forever()

    exchange = Exchange()
    await budget(stuck)(scope([(b"x-request-id", b"bad id!")]), exchange.receive, exchange.send)
    [[given]] = seen
    assert given != b"bad id!"
    assert exchange.header(b"x-request-id") == given


async def test_an_answer_already_begun_is_not_replaced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Headers sent, then the body stalls past the budget: no second response."""

    async def stalls_mid_answer(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await trio.sleep_forever()

    exchange = Exchange()
    await budget(stalls_mid_answer)(scope(), exchange.receive, exchange.send)
    assert [m["type"] for _, m in exchange.sent] == ["http.response.start"]


async def test_a_fast_handler_is_untouched(autojump_clock: trio.testing.MockClock) -> None:
    """Answered in 1 s: its own answer, at 1 s."""

    async def fast(scope: Any, receive: Any, send: Any) -> None:
        await trio.sleep(1.0)
        await answer(send, 201)

    exchange = Exchange()
    await budget(fast)(scope(), exchange.receive, exchange.send)
    assert (exchange.status, exchange.sent[0][0]) == (201, 1.0)
