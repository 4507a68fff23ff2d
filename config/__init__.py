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
from config._settings import (
    ConfigError,
    DatabaseSettings,
    HealthSettings,
    LogFormat,
    RedisSettings,
    Settings,
    environment_variables,
)

__all__ = [
    "RUNTIME_DEFAULTS",
    "BreakerSettings",
    "ConfigError",
    "DatabaseSettings",
    "HealthSettings",
    "LogFormat",
    "MailboxSettings",
    "Overflow",
    "RedisSettings",
    "RestartSettings",
    "RetrySettings",
    "RuntimeSettings",
    "Settings",
    "environment_variables",
]
