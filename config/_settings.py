"""The service's settings: one object, read from ``LOMASH_*`` environment variables.

Every field has a named default. The variable for a field is ``LOMASH_`` plus its
path in upper case, nested groups joined by ``_`` (the ``runtime`` group adds no
prefix of its own): ``database.url`` is ``LOMASH_DATABASE_URL``,
``runtime.breaker.reset_timeout_s`` is ``LOMASH_BREAKER_RESET_TIMEOUT_S``, ``port`` is
``LOMASH_PORT``. ``lomash config`` prints them all.

Invalid configuration raises ``ConfigError`` whose message is one line naming the
variable, e.g. ``LOMASH_PORT: expected an integer, got 'eighty'``.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from config._auth import DEVELOPMENT_SIGNING_KEYS, AuthSettings
from config._booking import BookingSettings
from config._check import check as _check
from config._http import HttpSettings
from config._jobs import JobSettings, OutboxSettings, SchedulerSettings
from config._notifications import (
    EmailSettings,
    Msg91Settings,
    NotificationSettings,
    SesSettings,
    SmtpSettings,
    TwilioSettings,
)
from config._products import ProductSettings
from config._runtime import MailboxSettings, RuntimeSettings
from config._stores import DatabaseSettings, HealthSettings, RedisSettings
from config._stripe import StripeSettings

__all__ = [
    "DEVELOPMENT_TOKEN_SECRET",
    "ConfigError",
    "Environment",
    "LogFormat",
    "Settings",
    "email_send_s",
    "environment_variables",
    "notifier_mailbox",
    "order_mailbox",
]

PREFIX = "LOMASH_"


class ConfigError(Exception):
    """The configuration is invalid; the message names the variable."""


class Environment(StrEnum):
    """Where the service runs; production refuses development conveniences."""

    DEVELOPMENT = "development"
    TEST = "test"
    STAGING = "staging"
    PRODUCTION = "production"


# Manage tokens are HMAC(secret, id): with this published secret anyone can forge one,
# so it is used only outside production, and production refuses it.
DEVELOPMENT_TOKEN_SECRET = "lomash-development-only"
# Shortest secret (manage-token secret, admin token) production accepts.
MIN_SECRET_LENGTH = 32


class LogFormat(StrEnum):
    AUTO = "auto"  # JSON unless stderr is a terminal
    JSON = "json"
    CONSOLE = "console"


@dataclass(frozen=True, slots=True)
class Settings:
    service: str = "lomash-backend"
    version: str = "0.1.0"
    environment: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # With --workers N: a worker whose resident memory passes this is drained (SIGTERM:
    # its requests finish) and replaced; none: no limit. Checked every
    # ``worker_memory_check_s``.
    worker_memory_limit_mb: int | None = None
    worker_memory_check_s: float = 1.0
    # How old an in-process copy of the catalogue's showroom and product lists may be
    # when the fast read routes answer from it (actors/_snapshots.py); 0: no copies,
    # every read asks the catalogue.
    catalogue_memory_s: float = 5.0
    # SIGTERM: in-flight requests get this long to finish. Below ECS's 30 s stop timeout.
    drain_timeout_s: float = 25.0
    # Bounded cleanup after the drain (closing pools) before the process gives up.
    cleanup_timeout_s: float = 3.0
    max_body_bytes: int = 64 * 1024
    # Retry-After sent with a 503 when a dependency is down and no better hint exists.
    unavailable_retry_after_s: float = 5.0
    log_format: LogFormat = LogFormat.AUTO
    log_level: str = "info"
    data_dir: str = ".data"
    # Bearer token for /admin (dead-letter queue); the admin API is off without one.
    admin_token: str | None = None
    # Bearer token for GET /metrics; without one /metrics is open outside production
    # and not served in production.
    metrics_token: str | None = None
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    booking: BookingSettings = field(default_factory=BookingSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    products: ProductSettings = field(default_factory=ProductSettings)
    stripe: StripeSettings = field(default_factory=StripeSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    email: EmailSettings = field(default_factory=EmailSettings)
    ses: SesSettings = field(default_factory=SesSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    twilio: TwilioSettings = field(default_factory=TwilioSettings)
    msg91: Msg91Settings = field(default_factory=Msg91Settings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, "port: must be between 0 and 65535")
        _check(self.workers >= 1, "workers: must be >= 1")
        _check(
            self.worker_memory_limit_mb is None or self.worker_memory_limit_mb > 0,
            "worker_memory_limit_mb: must be > 0 (or unset: no limit)",
        )
        _check(self.worker_memory_check_s > 0, "worker_memory_check_s: must be > 0")
        _check(self.catalogue_memory_s >= 0, "catalogue_memory_s: must be >= 0 (0: off)")
        _check(0 < self.drain_timeout_s < 30, "drain_timeout_s: must be > 0 and below ECS's 30 s")
        _check(self.cleanup_timeout_s > 0, "cleanup_timeout_s: must be > 0")
        _check(self.max_body_bytes > 0, "max_body_bytes: must be > 0")
        _check(
            self.booking.flush_timeout_s > self.database.call_timeout_s + self.redis.timeout_s,
            "booking: flush_timeout_s must be above database call_timeout_s plus redis "
            "timeout_s (a stalled call must end inside the batch's deadline)",
        )
        booking_answer_s = self.booking.flush_timeout_s + 2 * self.booking.answer_margin_s
        _check(
            self.http.request_timeout_s > booking_answer_s,
            f"http: request_timeout_s must be above the booking's own answer time "
            f"({booking_answer_s:g} s: booking flush_timeout_s + 2 x answer_margin_s)",
        )
        order_answer_s = (
            self.stripe.timeout_s + 2 * self.database.slow_call_s + self.booking.answer_margin_s
        )
        _check(
            self.http.request_timeout_s > order_answer_s,
            f"http: request_timeout_s must be above an order's own answer time "
            f"({order_answer_s:g} s: stripe timeout_s + 2 x database slow_call_s + booking "
            f"answer_margin_s)",
        )
        if self.environment is Environment.PRODUCTION:
            self._check_production()
        _check(
            self.log_level in ("debug", "info", "warning", "error"),
            "log_level: one of debug, info, warning, error",
        )

    def _check_production(self) -> None:
        secret = self.booking.token_secret
        _check(
            secret is not None,
            "environment: production needs LOMASH_BOOKING_TOKEN_SECRET (manage tokens)",
        )
        assert secret is not None
        _check(
            secret != DEVELOPMENT_TOKEN_SECRET,
            "environment: production refuses the published development "
            "LOMASH_BOOKING_TOKEN_SECRET (anyone could forge manage tokens)",
        )
        _check(
            len(secret) >= MIN_SECRET_LENGTH,
            f"environment: production needs a LOMASH_BOOKING_TOKEN_SECRET of at least "
            f"{MIN_SECRET_LENGTH} characters",
        )
        keys = self.auth.signing_keys
        _check(
            keys is not None and DEVELOPMENT_SIGNING_KEYS.split(":")[1] not in keys,
            "environment: production needs LOMASH_AUTH_SIGNING_KEYS of its own (the "
            "development key is published: anyone could sign access tokens)",
        )
        _check(
            self.stripe.secret_key is not None and self.stripe.webhook_secret is not None,
            "environment: production needs LOMASH_STRIPE_SECRET_KEY and "
            "LOMASH_STRIPE_WEBHOOK_SECRET (orders are paid with Stripe)",
        )
        _check(
            self.ses.enabled or self.smtp.enabled,
            "environment: production needs an email provider (LOMASH_SES_REGION or "
            "LOMASH_SMTP_URL): confirmations would go nowhere",
        )
        _check(
            self.admin_token is None or len(self.admin_token) >= MIN_SECRET_LENGTH,
            f"environment: production needs a LOMASH_ADMIN_TOKEN of at least "
            f"{MIN_SECRET_LENGTH} characters (or none: no admin API)",
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from ``LOMASH_*`` variables; unknown ``LOMASH_*`` names are errors."""
        known = {name for name, _ in environment_variables()}
        unknown = sorted(k for k in environ if k.startswith(PREFIX) and k not in known)
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown setting (see `lomash config`)")
        built = _build(cls, "", environ)
        assert isinstance(built, Settings)
        return built

    def with_overrides(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def environment_variables(settings: Settings | None = None) -> Iterator[tuple[str, object]]:
    """(variable, value) for every setting: its default, or its value in ``settings``."""
    yield from _walk(Settings() if settings is None else settings, "")


def _env_prefix(path: str, name: str) -> str:
    return path if name == "runtime" else f"{path}{name.upper()}_"


def _variable_name(f: dataclasses.Field[Any]) -> str:
    """A field's part of its variable: its name, or ``metadata["env"]`` where the
    natural name is a Python keyword (``email.sender`` is ``LOMASH_EMAIL_FROM``)."""
    return str(f.metadata.get("env", f.name.upper()))


def _walk(instance: Any, path: str) -> Iterator[tuple[str, object]]:
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            yield from _walk(value, _env_prefix(path, f.name))
        else:
            yield f"{PREFIX}{path}{_variable_name(f)}", value


def _build(cls: type[Any], path: str, environ: Mapping[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    variables: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            values[f.name] = _build(kind, _env_prefix(path, f.name), environ)  # type: ignore[arg-type]
            continue
        variable = f"{PREFIX}{path}{_variable_name(f)}"
        variables[f.name] = variable
        if variable in environ:
            try:
                values[f.name] = _parse(kind, environ[variable].strip())
            except ValueError as error:
                raise ConfigError(f"{variable}: {error}") from None
    try:
        return cls(**values)
    except ValueError as error:
        name, _, message = str(error).partition(": ")
        if name not in variables:
            raise ConfigError(f"{PREFIX}{path}*: {error}") from None
        raise ConfigError(f"{variables[name]}: {message or error}") from None


def _parse(kind: Any, raw: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if raw == "" or raw.lower() == "none":
            return None
        return _parse(options[0], raw)
    if origin is frozenset:
        (item,) = typing.get_args(kind)
        return frozenset(_parse(item, part.strip()) for part in raw.split(",") if part.strip())
    if kind is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(raw.lower())
        except ValueError:
            choices = ", ".join(str(m.value) for m in kind)
            raise ValueError(f"expected one of {choices}, got {raw!r}") from None
    if kind is str:
        return raw
    raise ValueError(f"unsupported setting type {kind!r}")  # pragma: no cover


def order_mailbox(settings: Settings) -> MailboxSettings:
    """The OrderActor's: placing an order is two quick database calls around one Stripe
    call, so a message gets Stripe's deadline plus two slow database calls; its caller
    that plus the booking's answer margin, inside the request's budget (checked)."""
    message_timeout_s = settings.stripe.timeout_s + 2 * settings.database.slow_call_s
    return dataclasses.replace(
        settings.runtime.mailbox,
        concurrency=settings.database.pool_max_size,
        message_timeout_s=message_timeout_s,
        ask_timeout_s=message_timeout_s + settings.booking.answer_margin_s,
    )


def email_send_s(settings: Settings) -> float:
    """The longest one email can take: every SES attempt and its backoff, then SMTP."""
    ses = settings.ses
    backoff_s = sum(ses.backoff_s * 2**n for n in range(ses.attempts - 1))
    return float(ses.attempts * ses.timeout_s + backoff_s + settings.smtp.timeout_s)


def notifier_mailbox(settings: Settings) -> MailboxSettings:
    """The notifier's: one job is an email (``email_send_s``) and an SMS (Twilio twice,
    then MSG91) around a few database calls, so a message may take all of that; its
    asker a margin more."""
    sms_s = 2 * settings.twilio.timeout_s + settings.msg91.timeout_s
    message_timeout_s = email_send_s(settings) + sms_s + 4 * settings.database.slow_call_s
    return dataclasses.replace(
        settings.runtime.mailbox,
        concurrency=settings.notifications.concurrency,
        message_timeout_s=message_timeout_s,
        ask_timeout_s=message_timeout_s + settings.booking.answer_margin_s,
    )
