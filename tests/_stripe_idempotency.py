"""What localstripe lacks and the tests need: Stripe's idempotency.

Real Stripe answers a POST that repeats an ``Idempotency-Key`` with the first
request's answer (one PaymentIntent however often the request is sent); localstripe
ignores the header and creates another. This loopback server sits in front of it and
adds that behaviour: per key, the first answer is kept and replayed (repeats of a
request still in flight wait for it). It counts what it forwarded and replayed, so a
test can show that a retry created nothing new.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, cast

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

__all__ = ["StripeIdempotency", "stripe_idempotency"]

_HOP = {b"host", b"content-length", b"connection", b"transfer-encoding"}


class StripeIdempotency:
    def __init__(self, upstream: httpx.AsyncClient) -> None:
        self._upstream = upstream
        self._answers: dict[str, tuple[int, list[tuple[bytes, bytes]], bytes]] = {}
        self._locks: dict[str, trio.Lock] = {}
        self.forwarded: Counter[str] = Counter()  # POSTs with a key sent on, by key
        self.replayed: Counter[str] = Counter()  # answered from the first answer

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        key = headers.get(b"idempotency-key", b"").decode()
        if scope["method"] != "POST" or not key:
            status, answer_headers, content = await self._forward(scope, body)
        else:
            async with self._locks.setdefault(key, trio.Lock()):
                if key in self._answers:
                    self.replayed[key] += 1
                    status, answer_headers, content = self._answers[key]
                else:
                    self.forwarded[key] += 1
                    status, answer_headers, content = await self._forward(scope, body)
                    if status < 500:
                        self._answers[key] = (status, answer_headers, content)
        await send({"type": "http.response.start", "status": status, "headers": answer_headers})
        await send({"type": "http.response.body", "body": content})

    async def _forward(
        self, scope: MutableMapping[str, Any], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        path = scope["path"] + (
            f"?{scope['query_string'].decode()}" if scope["query_string"] else ""
        )
        headers = [(n, v) for n, v in scope["headers"] if n not in _HOP]
        answer = await self._upstream.request(scope["method"], path, content=body, headers=headers)
        kept = [(n, v) for n, v in answer.headers.raw if n.lower() not in _HOP]
        return answer.status_code, kept, answer.content


@asynccontextmanager
async def stripe_idempotency(stripe_url: str) -> AsyncIterator[tuple[str, StripeIdempotency]]:
    """The layer on a loopback port of its own: (its URL, the layer)."""
    async with httpx.AsyncClient(base_url=stripe_url) as upstream, trio.open_nursery() as nursery:
        layer = StripeIdempotency(upstream)
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = None
        shutdown = trio.Event()
        binds = await nursery.start(
            partial(serve, cast(Any, layer), config, shutdown_trigger=shutdown.wait, mode="asgi")
        )
        try:
            yield binds[0], layer
        finally:
            shutdown.set()
