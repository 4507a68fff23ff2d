"""PostgreSQL, Redis and the health checks of both."""

from __future__ import annotations

from dataclasses import dataclass

from config._check import check as _check

__all__ = ["DatabaseSettings", "HealthSettings", "RedisSettings"]


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
    # Every call (one operation: any number of queries, a transaction) ends by this
    # deadline (the spec's breaker call timeout); one that does not is abandoned, its
    # transaction rolled back, and counted as a timeout by the gate.
    call_timeout_s: float = 5.0
    # The gate calls Postgres slow, and refuses calls at once, after ``slow_calls``
    # calls in a row each took longer than ``slow_call_s`` or timed out; a probe
    # (a ``SELECT 1`` answering within ``slow_call_s``) and one fast trial call
    # reopen it.
    slow_call_s: float = 1.0
    slow_calls: int = 5
    # Bulkhead: at most pool_max_size calls in flight; up to ``max_waiting`` more
    # wait for one of them, at most ``pool_wait_s``; the rest are refused at once.
    max_waiting: int = 20
    pool_wait_s: float = 0.5
    # After a connection failure the primary is refused fast and probed again after
    # reconnect_min_s, doubling up to reconnect_max_s: a database that comes back is
    # used again within reconnect_max_s, well inside the spec's 30 s reconnect window.
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0
    reconnect_window_s: float = 30.0

    @property
    def most_waiting(self) -> int:
        """The most calls that can ever be waiting on Postgres at once: each pool's
        calls in flight plus its bounded queue (a read refused by the primary may
        then wait on the replica too); beyond that, calls are refused at once."""
        pools = 2 if self.replica_url is not None else 1
        return pools * (self.pool_max_size + self.max_waiting)

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
        for name in (
            "connect_timeout_s",
            "statement_timeout_s",
            "reconnect_min_s",
            "call_timeout_s",
            "slow_call_s",
            "pool_wait_s",
        ):
            _check(getattr(self, name) > 0, f"{name}: must be > 0")
        _check(self.slow_calls >= 1, "slow_calls: must be >= 1")
        _check(self.max_waiting >= 0, "max_waiting: must be >= 0")
        _check(
            self.slow_call_s < self.call_timeout_s,
            "slow_call_s: must be below call_timeout_s",
        )
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
    # Bound on one whole operation (a pipeline, a script: several reads, each under
    # timeout_s), in case the server trickles its answer.
    operation_timeout_s: float = 1.0
    # The gate calls Redis slow after ``slow_calls`` calls in a row each took longer
    # than ``slow_call_s`` or timed out (``timeout_s``), and refuses calls at once
    # until a probe and one fast trial call answer.
    slow_call_s: float = 0.25
    slow_calls: int = 3
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
        _check(0 < self.slow_call_s < self.timeout_s, "slow_call_s: must be > 0, below timeout_s")
        _check(
            self.operation_timeout_s >= self.timeout_s,
            "operation_timeout_s: must be >= timeout_s",
        )
        _check(self.slow_calls >= 1, "slow_calls: must be >= 1")
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
    # /health/ready answers from a database verdict at most this old (one check per
    # period however many probes come; 0: a check per probe, concurrent ones shared).
    ready_memory_s: float = 1.0

    def __post_init__(self) -> None:
        _check(self.database_timeout_s > 0, "database_timeout_s: must be > 0")
        _check(self.ready_memory_s >= 0, "ready_memory_s: must be >= 0")
        _check(self.redis_timeout_s > 0, "redis_timeout_s: must be > 0")
