"""Settings: every duration, threshold and retry number of the service.

This package imports nothing of ours; everything else may import it.
"""

from config._runtime import (
    RUNTIME_DEFAULTS,
    BreakerSettings,
    MailboxSettings,
    Overflow,
    RestartSettings,
    RetrySettings,
    RuntimeSettings,
)

__all__ = [
    "RUNTIME_DEFAULTS",
    "BreakerSettings",
    "MailboxSettings",
    "Overflow",
    "RestartSettings",
    "RetrySettings",
    "RuntimeSettings",
]
