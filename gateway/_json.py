"""JSON in and out: typed request bodies (msgspec) with errors that name the field."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from quart import Response
from quart import request as current_request

from supervisors import InvalidRequest

__all__ = ["check_json_mimetype", "decode_json", "json_response", "read_json"]

_ENCODER = msgspec.json.Encoder()
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"(?:missing required|unknown) field `(?P<name>[^`]+)`")


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        _ENCODER.encode(payload), status=status, headers=headers, content_type="application/json"
    )


def _field(message: str) -> str | None:
    """``$.customer.email`` -> ``customer.email``; ``$[0]`` -> ``[0]``; the missing one."""
    path = ""
    match = _PATH.search(message)
    if match:
        path = match["path"].removeprefix(".")
    missing = _MISSING.search(message)
    if missing:
        path = f"{path}.{missing['name']}" if path else missing["name"]
    return path or None


async def read_json[T](kind: type[T]) -> T:
    """The request body decoded and validated as ``kind``; 400/422 naming the field."""
    check_json_mimetype(current_request.mimetype)
    return decode_json(await current_request.get_data(as_text=False), kind)


def check_json_mimetype(mimetype: str) -> None:
    """400 ``unsupported_media_type`` unless the body is declared JSON."""
    if mimetype != "application/json":
        raise InvalidRequest(
            "expected a JSON body with Content-Type: application/json",
            code="unsupported_media_type",
            malformed=True,
        )


def decode_json[T](body: bytes | str, kind: type[T]) -> T:
    """``body`` decoded and validated as ``kind``; 400/422 naming the field."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as error:
        message = str(error)
        field = _field(message)
        text = _PATH.sub("", message)
        raise InvalidRequest(
            f"{field}: {text}" if field else text, code="invalid_field", field=field
        ) from None
    except msgspec.DecodeError:
        raise InvalidRequest(
            "the request body is not valid JSON", code="malformed_json", malformed=True
        ) from None
