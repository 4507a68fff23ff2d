"""Routes for the process-level tests (``LOMASH_TEST_ROUTES=1``); never in production.

- ``GET /_test/sleep?seconds=S``: a slow request (logs ``test_sleep_started`` on entry,
  so a test knows it is in flight before it sends SIGTERM).
- ``POST /_test/echo``: decodes a typed JSON body and echoes it (the 400/422 paths).
- ``GET /_test/crash``: raises an unexpected error (the 500 path: no traceback leaks).
"""

from __future__ import annotations

import msgspec
import structlog
import trio
from quart import Response, request
from quart_trio import QuartTrio

from gateway._json import json_response, read_json
from supervisors import InvalidRequest

__all__ = ["register_test_routes"]

log = structlog.get_logger("gateway.test_routes")


class Contact(msgspec.Struct, forbid_unknown_fields=True):
    email: str


class Echo(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    count: int
    contact: Contact


def register_test_routes(app: QuartTrio) -> None:
    @app.get("/_test/sleep")
    async def sleep() -> Response:
        try:
            seconds = float(request.args.get("seconds", "1"))
        except ValueError:
            raise InvalidRequest(
                "seconds must be a number", code="invalid_field", field="seconds"
            ) from None
        log.info("test_sleep_started", seconds=seconds)
        await trio.sleep(seconds)
        return json_response({"slept": seconds})

    @app.post("/_test/echo")
    async def echo() -> Response:
        return json_response(await read_json(Echo))

    @app.get("/_test/crash")
    async def crash() -> Response:
        raise RuntimeError("a bug with a secret in it: hunter2")
