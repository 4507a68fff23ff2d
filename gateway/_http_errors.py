"""The one table mapping the project's errors to HTTP responses.

Looked up along the error's MRO (as starlette does), so the most specific entry
wins. Every response body has the same shape:

    {"error": {"code": "slot_taken", "message": "...", "field": "start",
               "request_id": "..."}}

A 503 carries ``Retry-After``. Nothing unmapped leaks a traceback: anything that is
not a ``LomashError`` becomes a 500 ``internal_error`` and is logged with its
traceback on the server side only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from supervisors import (
    ActorCrashed,
    ActorUnavailable,
    Conflict,
    ConnectionLost,
    Contention,
    DatabaseError,
    DeadlineExceeded,
    DependencyError,
    DomainError,
    InvalidData,
    InvalidRequest,
    LomashError,
    MailboxFull,
    MethodNotAllowed,
    NotFound,
    OperationTimeout,
    PayloadTooLarge,
    PaymentUnavailable,
    RequestTimeout,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    UpstreamError,
)

__all__ = ["ErrorResponse", "error_response"]


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    status: int
    code: str
    message: str
    field: str | None
    retry_after: int | None

    def body(self, request_id: str) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        error["request_id"] = request_id
        return {"error": error}

    allow: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()

    def headers(self) -> dict[str, str]:
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        if self.allow:
            headers["Allow"] = ", ".join(self.allow)
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="lomash"'
        headers.update(self.extra)
        return headers


@dataclass(frozen=True, slots=True)
class _Entry:
    status: int | Callable[[LomashError], int]
    code: str | Callable[[LomashError], str]
    message: str | None  # None: the error's own message is safe to show


def _invalid_status(error: LomashError) -> int:
    return 400 if isinstance(error, InvalidRequest) and error.malformed else 422


def _own_code(error: LomashError) -> str:
    return getattr(error, "code", "bad_request")


_TABLE: dict[type[LomashError], _Entry] = {
    UnsupportedMediaType: _Entry(415, "unsupported_media_type", None),
    InvalidRequest: _Entry(_invalid_status, _own_code, None),
    InvalidData: _Entry(422, "invalid_data", None),
    NotFound: _Entry(404, "not_found", None),
    Unauthorized: _Entry(401, _own_code, None),
    TooManyRequests: _Entry(429, "rate_limited", None),
    Conflict: _Entry(409, _own_code, None),
    MethodNotAllowed: _Entry(405, "method_not_allowed", None),
    PayloadTooLarge: _Entry(413, "payload_too_large", None),
    RequestTimeout: _Entry(408, "request_timeout", None),
    DomainError: _Entry(400, "bad_request", None),
    ServiceUnavailable: _Entry(503, "circuit_open", "temporarily unavailable, please retry"),
    MailboxFull: _Entry(503, "overloaded", "too busy right now, please retry"),
    ActorUnavailable: _Entry(503, "unavailable", "temporarily unavailable, please retry"),
    Unavailable: _Entry(503, "unavailable", "temporarily unavailable, please retry"),
    DeadlineExceeded: _Entry(503, "timeout", "the request took too long, please retry"),
    PaymentUnavailable: _Entry(
        503, "payment_unavailable", "Payment temporarily unavailable, please try again"
    ),
    OperationTimeout: _Entry(503, "timeout", "the request took too long, please retry"),
    ConnectionLost: _Entry(503, "dependency_unavailable", "temporarily unavailable, please retry"),
    Contention: _Entry(503, "busy", "too busy right now, please retry"),
    UpstreamError: _Entry(502, "upstream_error", "a provider failed, please retry"),
    DatabaseError: _Entry(500, "internal_error", "internal error"),
    DependencyError: _Entry(503, "dependency_unavailable", "temporarily unavailable, please retry"),
    ActorCrashed: _Entry(500, "internal_error", "internal error"),
    LomashError: _Entry(500, "internal_error", "internal error"),
}

INTERNAL = ErrorResponse(500, "internal_error", "internal error", None, None)


def error_response(error: BaseException, *, default_retry_after_s: float) -> ErrorResponse:
    """The HTTP response for ``error`` (500 internal_error for anything unexpected)."""
    if not isinstance(error, LomashError):
        return INTERNAL
    entry = next(_TABLE[cls] for cls in type(error).__mro__ if cls in _TABLE)
    status = entry.status(error) if callable(entry.status) else entry.status
    code = entry.code(error) if callable(entry.code) else entry.code
    retry_after = None
    if status in (429, 503):
        hint = getattr(error, "retry_after", None)
        seconds = default_retry_after_s if hint is None else hint
        retry_after = max(1, math.ceil(seconds))
    return ErrorResponse(
        status=status,
        code=code,
        message=entry.message if entry.message is not None else error.message,
        field=getattr(error, "field", None),
        retry_after=retry_after,
        allow=getattr(error, "allowed", ()),
        extra=tuple(getattr(error, "headers", {}).items()),
    )
