"""Settings: every duration, threshold and retry number of the service.

This package imports nothing of ours; everything else may import it.
"""

from config._http import HttpSettings
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
    BookingSettings,
    ConfigError,
    DatabaseSettings,
    HealthSettings,
    JobSettings,
    LogFormat,
    OutboxSettings,
    RedisSettings,
    SchedulerSettings,
    Settings,
    environment_variables,
)

__all__ = [
    "RUNTIME_DEFAULTS",
    "BookingSettings",
    "BreakerSettings",
    "ConfigError",
    "DatabaseSettings",
    "HealthSettings",
    "HttpSettings",
    "JobSettings",
    "LogFormat",
    "MailboxSettings",
    "OutboxSettings",
    "Overflow",
    "RedisSettings",
    "RestartSettings",
    "RetrySettings",
    "RuntimeSettings",
    "SchedulerSettings",
    "Settings",
    "environment_variables",
]
