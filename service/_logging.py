"""structlog set-up: JSON in production, console on a terminal, secrets redacted."""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import msgspec
import structlog

from config import LogFormat

__all__ = ["configure_logging", "redact"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR

# Keys whose values never reach a log line, and credentials inside URLs.
_SECRET_KEYS = re.compile(
    r"pass(word)?|secret|token|authori[sz]ation|api_?key|cookie|card|email|phone|address|postcode",
    re.IGNORECASE,
)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")


@functools.cache
def _secret(key: str) -> bool:
    """Whether a field of this name is hidden (a few dozen names: decided once each)."""
    return key != "event" and _SECRET_KEYS.search(key) is not None


def redact(
    logger: object, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: hides secrets and personal data."""
    for key, value in event.items():
        if _secret(key):
            event[key] = "[redacted]"
        elif isinstance(value, str) and "://" in value:
            event[key] = _URL_CREDENTIALS.sub(r"\g<scheme>\g<user>:[redacted]@", value)
    return event


_JSON = msgspec.json.Encoder(enc_hook=repr)  # what JSON cannot say, as its repr


def _render_json(logger: object, method: str, event: MutableMapping[str, Any]) -> str:
    """One JSON line (msgspec: a few times faster than json.dumps, same output)."""
    return _JSON.encode(event).decode()


def configure_logging(log_format: LogFormat, level: str, *, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    use_json = log_format is LogFormat.JSON or (
        log_format is LogFormat.AUTO and not stream.isatty()
    )
    renderer: structlog.typing.Processor = (
        _render_json if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # One write per line (print() writes the newline separately): worker processes
        # share stderr, and a pipe keeps writes under PIPE_BUF whole, not two halves.
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
