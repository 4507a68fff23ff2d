"""The service's settings: one object, read from ``LOMASH_*`` environment variables.

Every field has a named default. The variable for a field is ``LOMASH_`` plus its
path in upper case, nested groups joined by ``_`` (the ``runtime`` group adds no
prefix of its own): ``database.url`` is ``LOMASH_DATABASE_URL``,
``runtime.breaker.reset_timeout_s`` is ``LOMASH_BREAKER_RESET_TIMEOUT_S``, ``port`` is
``LOMASH_PORT``. ``python -m service config`` prints them all.

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

from config._http import HttpSettings
from config._queues import QueuePolicy
from config._runtime import RuntimeSettings

__all__ = [
    "DEVELOPMENT_TOKEN_SECRET",
    "ConfigError",
    "DatabaseSettings",
    "Environment",
    "HealthSettings",
    "JobSettings",
    "LogFormat",
    "OutboxSettings",
    "RedisSettings",
    "SchedulerSettings",
    "Settings",
    "environment_variables",
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


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """PostgreSQL. No URL means: start an embedded PostgreSQL under ``data_dir``."""

    url: str | None = None
    replica_url: str | None = None
    pool_min_size: int = 1
    pool_max_size: int = 10
    connect_timeout_s: float = 2.0
    # Server-side statement_timeout: a runaway query is cancelled by Postgres itself.
    statement_timeout_s: float = 5.0
    # Client-side bound on each query (asyncpg command_timeout): a server that stops
    # answering mid-query (a blackholed failover) is an outage after this, not a hang.
    command_timeout_s: float = 6.0
    # After a connection failure the primary is refused fast and probed again after
    # reconnect_min_s, doubling up to reconnect_max_s: a database that comes back is
    # used again within reconnect_max_s, well inside the spec's 30 s reconnect window.
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0
    reconnect_window_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("url", "replica_url"):
            url = getattr(self, name)
            _check(
                url is None or url.startswith(("postgres://", "postgresql://")),
                f"{name}: expected a postgresql:// URL, got {url!r}",
            )
        _check(self.pool_min_size >= 0, "pool_min_size: must be >= 0")
        _check(
            self.pool_max_size >= max(1, self.pool_min_size),
            "pool_max_size: must be >= 1 and >= pool_min_size",
        )
        for name in ("connect_timeout_s", "statement_timeout_s", "reconnect_min_s"):
            _check(getattr(self, name) > 0, f"{name}: must be > 0")
        _check(
            self.command_timeout_s > self.statement_timeout_s,
            "command_timeout_s: must be above statement_timeout_s (the server's own limit)",
        )
        _check(
            self.reconnect_max_s >= self.reconnect_min_s,
            "reconnect_max_s: must be >= reconnect_min_s",
        )
        _check(
            self.reconnect_max_s <= self.reconnect_window_s,
            "reconnect_max_s: must be <= reconnect_window_s (recovery must fit the window)",
        )


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Redis (or Sentinel). No URL means: start an embedded Redis under ``data_dir``."""

    url: str | None = None
    # Every key this process writes starts with this (tests use one per run).
    prefix: str = "lomash:"
    # Short on purpose: a dead Redis must be noticed in well under a second.
    connect_timeout_s: float = 0.25
    timeout_s: float = 0.5
    # While Redis is down, calls are refused at once and it is probed again after
    # reconnect_min_s, doubling up to reconnect_max_s.
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0

    def __post_init__(self) -> None:
        _check(
            self.url is None
            or self.url.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://")),
            f"url: expected a redis://, rediss://, unix:// or redis+sentinel:// URL,"
            f" got {self.url!r}",
        )
        _check(self.connect_timeout_s > 0, "connect_timeout_s: must be > 0")
        _check(self.timeout_s > 0, "timeout_s: must be > 0")
        _check(self.reconnect_min_s > 0, "reconnect_min_s: must be > 0")
        _check(
            self.reconnect_max_s >= self.reconnect_min_s,
            "reconnect_max_s: must be >= reconnect_min_s",
        )


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Each /health check has its own deadline so /health always answers quickly."""

    database_timeout_s: float = 1.0
    redis_timeout_s: float = 0.5

    def __post_init__(self) -> None:
        _check(self.database_timeout_s > 0, "database_timeout_s: must be > 0")
        _check(self.redis_timeout_s > 0, "redis_timeout_s: must be > 0")


@dataclass(frozen=True, slots=True)
class JobSettings(QueuePolicy):
    """Background jobs (the spec's BullMQ settings, per queue where it matters)."""

    # Queues this process works on, comma-separated; empty: no workers here. Only
    # queues whose job kinds have a handler here: a worker would fail the others'
    # jobs into the DLQ. notifications and payments join when their actors land;
    # until then their jobs wait in Redis.
    queues: str = "bookings"
    # The delivery policy's fields come from QueuePolicy (attempts, backoff, lease,
    # retention): this process's default policy is these settings themselves.
    heartbeat_s: float = 10.0
    # How long one lease call waits for work before looking again (also how long a
    # stopping worker may take to notice).
    poll_s: float = 0.25
    concurrency: int = 8
    # How often retention trimming runs.
    trim_every_s: float = 300.0
    # POSTed (JSON) when a job enters the dead-letter queue: the spec's SNS alert.
    alert_webhook_url: str | None = None
    alert_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        QueuePolicy.__post_init__(self)  # attempts, jitter, lease
        _check(0 < self.heartbeat_s < self.lease_s, "heartbeat_s: must be > 0 and < lease_s")
        _check(self.poll_s > 0, "poll_s: must be > 0")
        _check(self.concurrency >= 1, "concurrency: must be >= 1")
        _check(
            self.alert_webhook_url is None
            or self.alert_webhook_url.startswith(("http://", "https://")),
            "alert_webhook_url: expected an http(s):// URL",
        )

    def queue_names(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.queues.split(",") if name.strip())


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    """How often the relay polls, how much it moves at once, how it backs off."""

    # Wait between polls while the outbox is empty (a full batch polls again at once).
    poll_s: float = 0.2
    batch: int = 100
    # After a failure (queue or database): retry_min_s, times retry_factor per
    # consecutive failure, capped at retry_max_s.
    retry_min_s: float = 0.1
    retry_max_s: float = 5.0
    retry_factor: float = 2.0

    def __post_init__(self) -> None:
        if not self.poll_s > 0:
            raise ValueError(f"poll_s: must be > 0, got {self.poll_s!r}")
        if self.batch < 1:
            raise ValueError(f"batch: must be >= 1, got {self.batch!r}")
        if not 0 < self.retry_min_s <= self.retry_max_s:
            raise ValueError("retry_min_s, retry_max_s: need 0 < retry_min_s <= retry_max_s")
        if self.retry_factor < 1:
            raise ValueError(f"retry_factor: must be >= 1, got {self.retry_factor!r}")

    def backoff_s(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures (1-based)."""
        return min(self.retry_max_s, self.retry_min_s * self.retry_factor ** (failures - 1))


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """The scheduler's durations."""

    # Wait between attempts to enqueue a tick while the queue is unavailable.
    retry_s: float = 5.0
    # Oldest tick still worth enqueueing: on start (LATEST) and while retrying.
    catch_up_s: float = 24 * 3600.0
    # Longest single sleep: the wall clock is re-read at least this often.
    resync_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("retry_s", "catch_up_s", "resync_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class BookingSettings:
    """Slot booking: locks, holds, caches, batching, idempotency (actors/_booker.py)."""

    # A consultant-slot lock in Redis: concurrent attempts at the slot fail fast.
    lock_s: float = 10.0
    # A slot held for a booking accepted (202 PENDING) while Postgres is down: until
    # the replay confirms it, at most this long.
    pending_hold_s: float = 24 * 3600.0
    # While Postgres is down a replay job is handed back for this long, uncounted
    # (RetryLater): however long the outage, a pending booking is not dead-lettered.
    replay_retry_s: float = 5.0
    # Idempotency keys (and the first response) are kept at least this long.
    idempotency_keep_s: float = 48 * 3600.0
    # Availability in Redis: fresh for this long, and a stale copy served (minus
    # held slots) while Postgres is down.
    availability_fresh_s: float = 30.0
    availability_stale_s: float = 24 * 3600.0
    # Longest availability range, in days, and how far ahead a booking may be.
    max_range_days: int = 31
    horizon_days: int = 180
    # How often the consultants' hours are reloaded from Postgres.
    schedule_refresh_s: float = 60.0
    # Group commit: up to this many bookings in one database round trip, with this
    # many round trips in flight at once.
    batch_max: int = 64
    flushers: int = 2
    # A batch (Redis locks, the transaction, the pending path) gets this long; then
    # its undecided bookings are answered 503 (a retry with the same key learns the
    # outcome). The SlotBooker's callers wait this long plus a second, not less; it
    # must leave room for a stalled query (database command_timeout_s) and the
    # pending path after it.
    flush_timeout_s: float = 10.0
    # How long after a batch's deadline its callers still wait for their answer.
    answer_margin_s: float = 1.0
    # Guests' manage tokens are HMAC-SHA256(secret, appointment id): never stored,
    # not even in the idempotency records. Required in production; elsewhere a fixed
    # development secret is used (tokens then are forgeable: development only).
    token_secret: str | None = field(default=None, repr=False)
    # Bookings waiting in the SlotBooker's mailbox before new ones get 503.
    mailbox_capacity: int = 1024
    # A ConnectionLost write is retried in place this often before the pending path.
    write_retries: int = 1
    # Active future bookings one customer (by e-mail, and by phone digits) may hold;
    # one more is refused 409 too_many_bookings (checked in the booking transaction).
    max_active_per_customer: int = 5

    def __post_init__(self) -> None:
        for name in (
            "lock_s",
            "pending_hold_s",
            "replay_retry_s",
            "idempotency_keep_s",
            "availability_fresh_s",
            "availability_stale_s",
            "schedule_refresh_s",
            "flush_timeout_s",
            "answer_margin_s",
        ):
            _check(getattr(self, name) > 0, f"{name}: must be > 0")
        for name in ("max_range_days", "horizon_days", "batch_max", "flushers"):
            _check(getattr(self, name) >= 1, f"{name}: must be >= 1")
        _check(self.mailbox_capacity >= 1, "mailbox_capacity: must be >= 1")
        _check(self.write_retries >= 0, "write_retries: must be >= 0")
        _check(self.max_active_per_customer >= 1, "max_active_per_customer: must be >= 1")
        _check(
            self.idempotency_keep_s >= 24 * 3600,
            "idempotency_keep_s: must be at least 24 h (86400)",
        )


@dataclass(frozen=True, slots=True)
class Settings:
    service: str = "lomash-backend"
    version: str = "0.1.0"
    environment: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
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
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    booking: BookingSettings = field(default_factory=BookingSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, "port: must be between 0 and 65535")
        _check(self.workers >= 1, "workers: must be >= 1")
        _check(0 < self.drain_timeout_s < 30, "drain_timeout_s: must be > 0 and below ECS's 30 s")
        _check(self.cleanup_timeout_s > 0, "cleanup_timeout_s: must be > 0")
        _check(self.max_body_bytes > 0, "max_body_bytes: must be > 0")
        _check(
            self.booking.flush_timeout_s > self.database.command_timeout_s,
            "booking: flush_timeout_s must be above database command_timeout_s "
            "(a stalled query must end inside the batch's deadline)",
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
            raise ConfigError(f"{unknown[0]}: unknown setting (see `python -m service config`)")
        built = _build(cls, "", environ)
        assert isinstance(built, Settings)
        return built

    def with_overrides(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def environment_variables() -> Iterator[tuple[str, object]]:
    """(variable, default) for every setting."""
    yield from _walk(Settings(), "")


def _env_prefix(path: str, name: str) -> str:
    return path if name == "runtime" else f"{path}{name.upper()}_"


def _walk(instance: Any, path: str) -> Iterator[tuple[str, object]]:
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            yield from _walk(value, _env_prefix(path, f.name))
        else:
            yield f"{PREFIX}{path}{f.name.upper()}", value


def _build(cls: type[Any], path: str, environ: Mapping[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    variables: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            values[f.name] = _build(kind, _env_prefix(path, f.name), environ)  # type: ignore[arg-type]
            continue
        variable = f"{PREFIX}{path}{f.name.upper()}"
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
