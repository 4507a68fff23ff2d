"""JSON in and out: typed request bodies (msgspec) with errors that name the field."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
from quart import Response
from quart import request as current_request

from supervisors import InvalidRequest, UnsupportedMediaType

__all__ = ["NO_STORE", "check_json_content_type", "decode_json", "json_response", "read_json"]

_ENCODER = msgspec.json.Encoder()
# Responses that carry personal data or a manage token: no cache may keep them.
NO_STORE = {"Cache-Control": "no-store"}
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"(?:missing required|unknown) field `(?P<name>[^`]+)`")


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        _ENCODER.encode(payload), status=status, headers=headers, content_type="application/json"
    )


# What a pattern means, by the field's last name (msgspec would show the regex).
_FORMATS = {
    "email": "not a valid e-mail address",
    "phone": "not a valid phone number (7 to 20 digits, spaces, brackets or dashes)",
    "postcode": "not a valid UK postcode",
}
_LENGTH = re.compile(r"^Expected `(?:str|array|object)` of length (?P<op>[<>]=) (?P<n>\d+)$")
_TYPE = re.compile(r"^Expected `(?P<want>\w+)(?: \| null)?`, got `(?P<got>\w+)`$")
_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}
_NAMES |= {"object": "an object", "array": "an array", "null": "null"}


def _plain(field: str | None, text: str) -> str:
    """msgspec's validation message in words a person reads (no regex, no jargon)."""
    leaf = (field or "").rsplit(".", 1)[-1]
    if text.startswith("Expected `str` matching regex"):
        return _FORMATS.get(leaf, "contains characters that are not allowed here")
    if length := _LENGTH.match(text):
        n = int(length["n"])
        if length["op"] == ">=":
            return "must not be empty" if n == 1 else f"must have at least {n} characters"
        return f"must have at most {n} characters"
    if typed := _TYPE.match(text):
        want = _NAMES.get(typed["want"], typed["want"])
        return f"expected {want}, got {_NAMES.get(typed['got'], typed['got'])}"
    if text.startswith("Invalid enum value"):
        return "not one of the accepted values"
    if text.startswith("Invalid RFC3339"):
        return "expected a date and time with its offset, e.g. 2027-01-04T10:00:00+00:00"
    if text.startswith("Object contains unknown field"):
        return "unknown field"
    if text.startswith("Object missing required field"):
        return "required"
    return text


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
    """The request body decoded and validated as ``kind``; 400/415/422 naming the field."""
    check_json_content_type(current_request.headers.get("Content-Type", ""))
    return decode_json(await current_request.get_data(as_text=False), kind)


def check_json_content_type(content_type: str) -> None:
    """415 ``unsupported_media_type`` unless the body is declared JSON in UTF-8 (the
    only charset JSON has: RFC 8259); a charset parameter must say so."""
    mimetype, *parameters = content_type.split(";")
    if mimetype.strip().lower() != "application/json":
        raise UnsupportedMediaType("expected a JSON body with Content-Type: application/json")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise UnsupportedMediaType("JSON bodies are UTF-8: charset=utf-8 or none")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise _DuplicateKey(duplicate)
    return dict(pairs)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def decode_json[T](body: bytes | str, kind: type[T]) -> T:
    """``body`` decoded and validated as ``kind``; 400/422 naming the field. A key
    given twice in one object is refused (parsers disagree on which one wins)."""
    if isinstance(body, bytes):
        try:
            body.decode()  # JSON is UTF-8: invalid bytes are malformed, whatever field
        except UnicodeDecodeError:
            raise _malformed() from None
    try:
        decoded = msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as error:
        message = str(error)
        field = _field(message)
        text = _plain(field, _PATH.sub("", message))
        raise InvalidRequest(
            f"{field}: {text}" if field else text, code="invalid_field", field=field
        ) from None
    except msgspec.DecodeError:
        raise _malformed() from None
    try:
        json.loads(body, object_pairs_hook=_unique_keys)
    except _DuplicateKey as duplicate:
        raise InvalidRequest(
            f"{duplicate.key}: given twice", code="duplicate_field", field=duplicate.key
        ) from None
    except ValueError:  # msgspec accepted what the stdlib parser does not
        raise _malformed() from None
    return decoded


def _malformed() -> InvalidRequest:
    return InvalidRequest(
        "the request body is not valid JSON (UTF-8)", code="malformed_json", malformed=True
    )
