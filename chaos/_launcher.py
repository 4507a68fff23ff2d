"""``python -m chaos._launcher serve ...``: the service as shipped plus what the
experiments act through (the local stack runs this; production never does).

- ``POST /_chaos/grow?mb=N``: the answering process keeps N MiB more, written so it
  is resident (a leak, for the memory-leak experiment and the parent's
  ``LOMASH_WORKER_MEMORY_LIMIT_MB`` watch). N is 1..256 per call.
- ``CHAOS_BROKEN=<how>`` (set by ``lomash chaos run --broken``) makes the service
  wrong on purpose, an ASGI layer around everything, to prove that the experiments'
  verdicts catch it: ``500-on-outage`` answers 500 where the service answers 503
  (an outage path that was never built); ``lose-pending`` answers a booking's 202
  with an id nobody keeps (a write accepted while Postgres is away, then lost).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from chaos._cli import BROKEN
from gateway._asgi import App, Message, Receive, Scope, Send
from gateway._json import json_response
from service import Extension, Launcher, main
from supervisors import InvalidRequest

__all__ = ["CHAOS_EXTENSION"]

NOBODYS = "00000000-0000-4000-8000-000000000000"
_LEAK: list[bytes] = []


def register_chaos_routes(app: QuartTrio) -> None:
    @app.post("/_chaos/grow")
    async def grow() -> Response:
        raw = request.args.get("mb", "16")
        if not raw.isdigit() or not 1 <= int(raw) <= 256:
            raise InvalidRequest("mb: a whole number 1..256", code="invalid_field", field="mb")
        _LEAK.append(b"\x01" * (int(raw) * 1024 * 1024))  # written: resident
        return json_response({"pid": os.getpid(), "kept_mb": sum(map(len, _LEAK)) >> 20})


def broken(how: str) -> Any:
    """An ASGI layer that rewrites answers the way ``how`` says."""
    if how not in BROKEN:
        raise SystemExit(f"CHAOS_BROKEN: one of {', '.join(BROKEN)}, got {how!r}")

    def wrap(app: App) -> App:
        async def wrong(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)
            booking = scope["method"] == "POST" and scope["path"] == "/v1/appointments"
            held: list[Message] = []

            async def rewrite(message: Message) -> None:
                if message["type"] == "http.response.start":
                    if how == "500-on-outage" and message["status"] == 503:
                        message["status"] = 500
                        message["headers"] = [
                            (k, v) for k, v in message["headers"] if k.lower() != b"retry-after"
                        ]
                    if how == "lose-pending" and booking and message["status"] == 202:
                        held.append(message)
                        return
                elif held and message["type"] == "http.response.body":
                    held.append(message)
                    if message.get("more_body"):
                        return
                    body = json.loads(b"".join(m.get("body", b"") for m in held[1:]))
                    body["id"] = NOBODYS
                    raw = json.dumps(body).encode()
                    start = held[0]
                    start["headers"] = [
                        (k, str(len(raw)).encode() if k.lower() == b"content-length" else v)
                        for k, v in start["headers"]
                    ]
                    await send(start)
                    await send({"type": "http.response.body", "body": raw})
                    return
                await send(message)

            await app(scope, receive, rewrite)

        return wrong

    return wrap


def _extension() -> Extension:
    how = os.environ.get("CHAOS_BROKEN")
    return Extension(routes=register_chaos_routes, wrap=broken(how) if how else None)


CHAOS_EXTENSION = _extension()

if __name__ == "__main__":
    sys.exit(main(launcher=Launcher(module="chaos._launcher", extensions=[CHAOS_EXTENSION])))
