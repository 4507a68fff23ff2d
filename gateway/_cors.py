"""CORS for the customers' front ends: the allowed origins get their answers' headers,
and preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered here,
before any route or budget.

- A request without ``Origin`` (a server, curl) passes untouched.
- From an allowed origin: ``Access-Control-Allow-Origin`` (that origin), ``Vary:
  Origin``, and the headers a client needs exposed (``Retry-After``, ``RateLimit-*``,
  ``X-Request-ID``). No credentials: the API authenticates with headers, not cookies.
- A preflight from an allowed origin: 204 with the methods, the request headers it
  asked for among those the API reads, ``Access-Control-Max-Age``; from any other
  origin: 403 ``origin_not_allowed``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import msgspec

from gateway._asgi import App, Receive, Scope, Send, send_json

__all__ = ["Cors"]

_METHODS = b"GET, POST, OPTIONS"
_ALLOWED_HEADERS = frozenset(
    {"content-type", "authorization", "idempotency-key", "x-manage-token", "x-request-id"}
)
_EXPOSED = b"Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, " + (
    b"RateLimit-Policy, X-Request-ID"
)
_REFUSED = msgspec.json.encode(
    {
        "error": {
            "code": "origin_not_allowed",
            "message": "this origin may not call the API from a browser",
            "request_id": "",
        }
    }
)


class Cors:
    def __init__(self, app: App, *, origins: frozenset[str], max_age_s: int) -> None:
        self._app = app
        self._any = "*" in origins
        self._origins = {o.encode() for o in origins if o != "*"}
        self._max_age = str(max_age_s).encode()

    def _allowed(self, origin: bytes) -> bool:
        return self._any or origin in self._origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        if origin is None:
            await self._app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await self._preflight(origin, headers, send)
            return
        if not self._allowed(origin):
            await self._app(scope, receive, send)
            return

        async def with_cors(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", origin),
                    (b"vary", b"Origin"),
                    (b"access-control-expose-headers", _EXPOSED),
                ]
            await send(message)

        await self._app(scope, receive, with_cors)

    async def _preflight(self, origin: bytes, headers: dict[bytes, bytes], send: Send) -> None:
        if not self._allowed(origin):
            await send_json(send, 403, _REFUSED, [(b"vary", b"Origin")])
            return
        asked = headers.get(b"access-control-request-headers", b"").decode("latin-1")
        granted = [h.strip() for h in asked.split(",") if h.strip().lower() in _ALLOWED_HEADERS]
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    (b"access-control-allow-origin", origin),
                    (b"access-control-allow-methods", _METHODS),
                    (b"access-control-allow-headers", ", ".join(granted).encode()),
                    (b"access-control-max-age", self._max_age),
                    (b"vary", b"Origin"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
