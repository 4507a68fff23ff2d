"""Test-wide setup: structlog renders plainly so failures are readable."""

from __future__ import annotations

import structlog

structlog.configure(
    processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
    cache_logger_on_first_use=False,
)
