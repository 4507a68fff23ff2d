"""Background jobs: the queues' workers, the outbox relay, the scheduler."""

from __future__ import annotations

from dataclasses import dataclass

from config._check import check as _check
from config._queues import QueuePolicy

__all__ = ["JobSettings", "OutboxSettings", "SchedulerSettings"]


@dataclass(frozen=True, slots=True)
class JobSettings(QueuePolicy):
    """Background jobs (the spec's BullMQ settings, per queue where it matters)."""

    # Queues this process works on, comma-separated; empty: no workers here. Only
    # queues whose job kinds have a handler here: a worker would fail the others'
    # jobs into the DLQ. (payments' only job, the reconciliation, is scheduled only
    # where Stripe is configured.)
    queues: str = "bookings,payments,notifications"
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

    def service_queues(self) -> tuple[str, ...]:
        """Every queue of the service (the default ones and this configuration's),
        whether or not this process works on them: what operators look at."""
        default = JobSettings.__dataclass_fields__["queues"].default
        assert isinstance(default, str)
        names = (*(n.strip() for n in default.split(",")), *self.queue_names())
        return tuple(dict.fromkeys(names))


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
