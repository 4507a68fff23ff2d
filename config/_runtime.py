"""Every number the actor runtime uses, as named defaults.

The values come from ``shared/spec/fault-tolerance.md`` where the spec states one
(breaker: 5 s call timeout, >50 % failures in a 60 s window after 5 calls, 30 s reset;
retries: 3 with 100/200/400 ms backoff and +-20 ms jitter on 429/502/503/504, resets
and timeouts). The rest (mailbox sizes, restart intensity and backoff, shutdown
budgets) are this project's choices, stated here so nothing in code carries a literal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: must be > 0, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name}: must be >= 0, got {value!r}")


class Overflow(StrEnum):
    """What a full mailbox does to a sender."""

    REJECT = "reject"  # fail at once with MailboxFull (HTTP 503 at the gateway)
    WAIT = "wait"  # wait for room up to ``overflow_wait_s``, then MailboxFull


@dataclass(frozen=True, slots=True)
class MailboxSettings:
    """Shape of one actor's mailbox and how it dispatches."""

    capacity: int = 1024
    overflow: Overflow = Overflow.REJECT
    overflow_wait_s: float = 0.5
    # Upper bound on every ask: a reply that has not come by then is an AskTimeout.
    ask_timeout_s: float = 10.0
    # Bulkhead: how many messages the actor handles at once (1 = strictly serial).
    concurrency: int = 1
    # Per-message (per-attempt) timeout; the spec's breaker call timeout is 5 s.
    message_timeout_s: float | None = 5.0
    # How long a caller is told to wait (Retry-After) when the mailbox is full.
    full_retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        _positive("capacity", self.capacity)
        _positive("concurrency", self.concurrency)
        _positive("ask_timeout_s", self.ask_timeout_s)
        _non_negative("overflow_wait_s", self.overflow_wait_s)
        _non_negative("full_retry_after_s", self.full_retry_after_s)
        if self.message_timeout_s is not None:
            _positive("message_timeout_s", self.message_timeout_s)


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Circuit breaker: Closed -> Open -> Half-Open, as the spec's opossum setup."""

    # Open when more than this share of calls in the window failed...
    failure_ratio: float = 0.5
    # ...once at least this many calls were made in the window (opossum volumeThreshold).
    min_calls: int = 5
    # Rolling window, kept as ``window_buckets`` buckets (opossum rollingCount*).
    window_s: float = 60.0
    window_buckets: int = 60
    # Open -> Half-Open after this long (opossum resetTimeout).
    reset_timeout_s: float = 30.0
    # Trial calls let through while Half-Open; all must succeed to close.
    half_open_max_calls: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.failure_ratio < 1.0:
            raise ValueError(f"failure_ratio: must be in [0, 1), got {self.failure_ratio!r}")
        _positive("min_calls", self.min_calls)
        _positive("window_s", self.window_s)
        _positive("window_buckets", self.window_buckets)
        _positive("reset_timeout_s", self.reset_timeout_s)
        _positive("half_open_max_calls", self.half_open_max_calls)


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Retries for idempotent messages only; non-idempotent ones are never retried."""

    max_retries: int = 3
    base_delay_s: float = 0.1
    factor: float = 2.0
    jitter_s: float = 0.02
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 502, 503, 504}))

    def __post_init__(self) -> None:
        _non_negative("max_retries", self.max_retries)
        _non_negative("base_delay_s", self.base_delay_s)
        _non_negative("jitter_s", self.jitter_s)
        if self.factor < 1.0:
            raise ValueError(f"factor: must be >= 1, got {self.factor!r}")

    def delays(self) -> tuple[float, ...]:
        """The un-jittered delay before each retry: 0.1, 0.2, 0.4 by default."""
        return tuple(self.base_delay_s * self.factor**n for n in range(self.max_retries))


@dataclass(frozen=True, slots=True)
class RestartSettings:
    """How a supervisor restarts its children (OTP intensity + Akka-style backoff)."""

    # More than ``max_restarts`` restarts within ``within_s`` -> the supervisor fails
    # and escalates to its parent.
    max_restarts: int = 5
    within_s: float = 30.0
    # The first restart after a stable period is immediate; each further consecutive
    # restart waits backoff_min_s * backoff_factor**(n-2), capped at backoff_max_s,
    # spread by +-backoff_jitter (a fraction of the delay).
    backoff_min_s: float = 0.1
    backoff_max_s: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.2
    # A child that ran this long without crashing starts its backoff from scratch.
    backoff_reset_s: float = 60.0

    def __post_init__(self) -> None:
        _non_negative("max_restarts", self.max_restarts)
        _positive("within_s", self.within_s)
        _non_negative("backoff_min_s", self.backoff_min_s)
        _non_negative("backoff_max_s", self.backoff_max_s)
        _non_negative("backoff_reset_s", self.backoff_reset_s)
        if not 0.0 <= self.backoff_jitter < 1.0:
            raise ValueError(f"backoff_jitter: must be in [0, 1), got {self.backoff_jitter!r}")
        if self.backoff_factor < 1.0:
            raise ValueError(f"backoff_factor: must be >= 1, got {self.backoff_factor!r}")


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """All of the actor runtime's settings in one place."""

    mailbox: MailboxSettings = field(default_factory=MailboxSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    restart: RestartSettings = field(default_factory=RestartSettings)
    # Graceful stop budget of one child before it is cancelled.
    child_shutdown_s: float = 5.0
    # Bound on an actor behaviour's own teardown (its ``__aexit__``), which runs
    # shielded from cancellation so a brutal stop still closes what it opened.
    cleanup_s: float = 2.0

    def __post_init__(self) -> None:
        _non_negative("child_shutdown_s", self.child_shutdown_s)
        _non_negative("cleanup_s", self.cleanup_s)


RUNTIME_DEFAULTS = RuntimeSettings()
