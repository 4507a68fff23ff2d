"""EdgeGuard (gateway/_edge.py) in-process under trio's virtual clock: an early
answer waits for the rest of the body, within exact bounds."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import trio

from gateway._connections import ConnectionLimiter
from gateway._edge import EdgeGuard

LIMIT = 100
BODY_TIMEOUT_S = 30.0


class Client:
    """Feeds request messages at given virtual times; records what is sent back."""

    def __init__(self, chunks: list[tuple[float, bytes, bool]]) -> None:
        self._chunks = chunks
        self.sent: list[tuple[float, str]] = []
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0

    async def receive(self) -> dict[str, Any]:
        if not self._chunks:
            await trio.sleep_forever()
        at, body, more = self._chunks.pop(0)
        await trio.sleep_until(at)
        return {"type": "http.request", "body": body, "more_body": more}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append((trio.current_time(), message["type"]))
        if message["type"] == "http.response.start":
            self.headers = list(message["headers"])
            self.status = message["status"]


async def early_answer(scope: Any, receive: Any, send: Any) -> None:
    """A route that answers 404 without reading the body."""
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _scope(**headers: str) -> dict[str, Any]:
    return {
        "type": "http",
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }


async def quart_style_early_answer(scope: Any, receive: Any, send: Any) -> None:
    """Like quart-trio: the body in one chunk, then an empty last chunk."""
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"{}", "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _run(client: Client, app: Any = early_answer, **headers: str) -> None:
    guard = EdgeGuard(app, max_body_bytes=LIMIT, body_timeout_s=BODY_TIMEOUT_S)
    await guard(_scope(**headers), client.receive, client.send)


async def test_an_early_answer_ends_once_the_body_has_arrived(autojump_clock: Any) -> None:
    """The body's two chunks arrive at 0.05 s and 2 s: the answer (status line too) is
    sent at 2 s, when the body is complete, without Connection: close (reusable)."""
    client = Client([(0.05, b"x" * 10, True), (2.0, b"y" * 10, False)])
    start = trio.current_time()
    await _run(client, content_length="20")
    assert [(round(t - start, 6), kind) for t, kind in client.sent] == [
        (2.0, "http.response.start"),
        (2.0, "http.response.body"),
    ]
    assert (b"connection", b"close") not in client.headers


async def test_a_quart_style_answer_is_held_whole(autojump_clock: Any) -> None:
    """An answer sent as body + empty last chunk is held whole until the body is read."""
    client = Client([(3.0, b"x" * 10, False)])
    start = trio.current_time()
    await _run(client, quart_style_early_answer, content_length="10")
    assert {round(t - start, 6) for t, _ in client.sent} == {3.0}
    assert len(client.sent) == 3


async def test_a_body_that_never_ends_is_given_up_at_the_deadline(autojump_clock: Any) -> None:
    """A body that stops arriving: the answer ends exactly body_timeout_s after the
    request began (the connection then closes: the body was not read to its end)."""
    client = Client([(1.0, b"x", True)])
    start = trio.current_time()
    await _run(client, content_length="500")
    assert round(client.sent[-1][0] - start, 6) == BODY_TIMEOUT_S
    assert (b"connection", b"close") in client.headers


async def test_a_body_over_the_limit_is_not_drained(autojump_clock: Any) -> None:
    """Past max_body_bytes the drain stops at once: nobody reads a huge body for free."""
    client = Client([(0.5, b"x" * (LIMIT + 1), True), (9.0, b"never read", False)])
    start = trio.current_time()
    await _run(client, transfer_encoding="chunked")
    assert round(client.sent[-1][0] - start, 6) == 0.5
    assert (b"connection", b"close") in client.headers


async def test_no_body_no_wait_and_ambiguous_framing_closes(autojump_clock: Any) -> None:
    """A request without a body is answered at once; one with Content-Length and
    Transfer-Encoding gets Connection: close."""
    plain = Client([])
    await _run(plain)
    assert [kind for _, kind in plain.sent] == ["http.response.start", "http.response.body"]
    assert (b"connection", b"close") not in plain.headers
    for length in ("5", "0"):
        ambiguous = Client([(0.0, b"", False)])
        await _run(ambiguous, content_length=length, transfer_encoding="chunked")
        assert (b"connection", b"close") in ambiguous.headers


async def reads_everything(scope: Any, receive: Any, send: Any) -> None:
    """quart-trio's way: read until the body ends or the client is gone; answer only
    when the body is complete."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def test_a_chunked_body_past_the_limit_is_cut_off_and_answered_413(
    autojump_clock: Any,
) -> None:
    """A chunked body that goes on and on: after the chunk that crosses the limit the
    app hears a disconnect (nothing more is read or kept) and the client gets 413
    payload_too_large with Connection: close."""
    chunks = [(0.1 * n, b"x" * 40, True) for n in range(1, 1000)]
    client = Client(chunks)
    guard = EdgeGuard(reads_everything, max_body_bytes=LIMIT, body_timeout_s=BODY_TIMEOUT_S)
    await guard(_scope(transfer_encoding="chunked"), client.receive, client.send)
    assert len(chunks) == 999 - 3  # read 3 chunks of 40 bytes (120 > 100), no more
    assert [kind for _, kind in client.sent] == ["http.response.start", "http.response.body"]
    assert (b"connection", b"close") in client.headers
    assert client.status == 413


async def test_the_limiter_makes_room_by_closing_the_oldest_idle_connection() -> None:
    """At the cap: the oldest idle connection's idle wait is cancelled; none idle, the
    newcomer is refused; a connection that got busy again is not chosen."""
    limiter = ConnectionLimiter(2)
    limiter.open = 2
    first, second = trio.CancelScope(), trio.CancelScope()
    a, b = object(), object()
    limiter.idle(a, first)
    limiter.idle(b, second)
    limiter.not_idle(a)
    assert limiter.admit()
    assert (first.cancel_called, second.cancel_called) == (False, True)
    assert not limiter.admit()
    assert (limiter.evicted, limiter.shed) == (1, 1)
