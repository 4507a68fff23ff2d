"""Log lines: one write each (worker processes share stderr), secrets redacted."""

from __future__ import annotations

import io
import json

import structlog

from config import LogFormat
from service._logging import configure_logging


class Recording(io.StringIO):
    """A stream that remembers every write call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_each_line_is_one_write_and_secrets_are_redacted() -> None:
    """Two processes writing to one pipe interleave whole writes only: a line and its
    newline must be one write, or lines of two workers run into each other."""
    stream = Recording()
    before = structlog.get_config()
    configure_logging(LogFormat.JSON, "info", stream=stream)
    try:
        log = structlog.get_logger("test")
        log.info("first", token="s3cret", count=1)
        log.info("second")
    finally:
        structlog.configure(**before)  # the test session's own set-up (conftest)
    assert len(stream.writes) == 2
    assert all(w.endswith("\n") and w.count("\n") == 1 for w in stream.writes)
    first = json.loads(stream.writes[0])
    assert (first["event"], first["count"], first["token"]) == ("first", 1, "[redacted]")
