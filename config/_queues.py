"""A job queue's delivery policy: attempts, backoff, lease, retention (BullMQ's)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["QueuePolicy"]


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """The spec's BullMQ job options: 5 attempts, exponential backoff from 1 s, failed
    jobs kept 7 days, completed 24 h; a silent worker loses its lease after ``lease_s``.
    ``JobSettings`` is one (its variables are ``LOMASH_JOBS_ATTEMPTS``, ...)."""

    attempts: int = 5
    backoff_base_s: float = 1.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.1
    lease_s: float = 30.0
    keep_completed_s: float = 24 * 3600.0
    keep_dead_s: float = 7 * 24 * 3600.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts: must be >= 1")
        if not 0 <= self.backoff_jitter < 1:
            raise ValueError("backoff_jitter: must be in [0, 1)")
        if self.lease_s <= 0:
            raise ValueError("lease_s: must be > 0")

    def backoff_s(self, failed_attempt: int) -> float:
        """Un-jittered wait after failed attempt ``failed_attempt`` (1-based): 1, 2, 4, 8 s."""
        return self.backoff_base_s * self.backoff_factor ** (failed_attempt - 1)
