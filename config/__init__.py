"""Settings: every duration, threshold and retry number of the service.

This package imports nothing of ours; everything else may import it.
"""

from config._auth import AuthSettings, RateLimit, RateLimitSettings, parse_rate
from config._booking import BookingSettings, booker_mailbox, replayer_mailbox
from config._http import HttpDriver, HttpSettings
from config._jobs import JobSettings, OutboxSettings, SchedulerSettings
from config._notifications import (
    EmailSettings,
    Msg91Settings,
    NotificationSettings,
    SesSettings,
    SmtpServer,
    SmtpSettings,
    TwilioSettings,
)
from config._products import ProductSettings
from config._queues import QueuePolicy
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
    DEVELOPMENT_TOKEN_SECRET,
    ConfigError,
    Environment,
    LogFormat,
    Settings,
    email_send_s,
    environment_variables,
    notifier_mailbox,
    order_mailbox,
)
from config._stores import DatabaseSettings, HealthSettings, RedisSettings
from config._stripe import StripeSettings

__all__ = [
    "DEVELOPMENT_TOKEN_SECRET",
    "RUNTIME_DEFAULTS",
    "AuthSettings",
    "BookingSettings",
    "BreakerSettings",
    "ConfigError",
    "DatabaseSettings",
    "EmailSettings",
    "Environment",
    "HealthSettings",
    "HttpDriver",
    "HttpSettings",
    "JobSettings",
    "LogFormat",
    "MailboxSettings",
    "Msg91Settings",
    "NotificationSettings",
    "OutboxSettings",
    "Overflow",
    "ProductSettings",
    "QueuePolicy",
    "RateLimit",
    "RateLimitSettings",
    "RedisSettings",
    "RestartSettings",
    "RetrySettings",
    "RuntimeSettings",
    "SchedulerSettings",
    "SesSettings",
    "Settings",
    "SmtpServer",
    "SmtpSettings",
    "StripeSettings",
    "TwilioSettings",
    "booker_mailbox",
    "email_send_s",
    "environment_variables",
    "notifier_mailbox",
    "order_mailbox",
    "parse_rate",
    "replayer_mailbox",
]
