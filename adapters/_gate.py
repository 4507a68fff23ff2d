"""A reconnect gate: refuse calls to a dependency known to be down, probe with backoff.

After a connection failure the gate is *down*: calls fail at once with
``ConnectionLost(retry_after=...)`` instead of each waiting for a connect timeout,
until the next probe is due (``min_s``, doubling, capped at ``max_s``). The first call
after that goes through as the probe; success reopens the gate. Health checks probe
whenever they run (``probe=True``), so recovery is noticed even without traffic.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

import structlog
import trio

from supervisors import ConnectionLost

__all__ = ["GateStatistics", "ReconnectGate", "describe_outage"]

_ERRNO = re.compile(r"Error (\d+) connecting")  # redis-py's wording
_REASONS = {errno.ECONNREFUSED: "connection refused", errno.ECONNRESET: "connection reset"}


def describe_outage(error: BaseException) -> str:
    """A short reason for a connection failure ("connection refused", "connection
    timeout", ...), whichever driver raised it; shown in /health and logs."""
    if isinstance(error, TimeoutError):
        return "connection timeout"
    number = getattr(error, "errno", None)
    match = _ERRNO.search(str(error))
    if number is None and match:
        number = int(match[1])
    if number in _REASONS:
        return _REASONS[number]
    if number is not None:
        return os.strerror(number).lower()
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:120]


@dataclass(frozen=True, slots=True)
class GateStatistics:
    up: bool
    failures: int
    outages: int
    last_error: str | None


class ReconnectGate:
    def __init__(self, dependency: str, *, min_s: float, max_s: float) -> None:
        self.dependency = dependency
        self._min_s = min_s
        self._max_s = max_s
        self._failures = 0  # consecutive
        self._outages = 0
        self._down_since: float | None = None
        self._next_probe_at = 0.0
        self._last_error: str | None = None
        self._log = structlog.get_logger("adapters.gate").bind(dependency=dependency)

    @property
    def up(self) -> bool:
        return self._down_since is None

    def check(self) -> None:
        """Raise ``ConnectionLost`` if the dependency is down and no probe is due yet."""
        if self._down_since is None:
            return
        wait = self._next_probe_at - trio.current_time()
        if wait > 0:
            raise ConnectionLost(
                f"{self.dependency} is unavailable ({self._last_error}); reconnecting",
                dependency=self.dependency,
                retry_after=wait,
            )

    def failed(self, reason: str) -> None:
        now = trio.current_time()
        self._failures += 1
        self._last_error = reason
        delay = min(self._max_s, self._min_s * 2 ** (self._failures - 1))
        self._next_probe_at = now + delay
        if self._down_since is None:
            self._down_since = now
            self._outages += 1
            self._log.error("dependency_down", reason=reason, next_probe_s=delay)
        else:
            self._log.info("dependency_probe_failed", reason=reason, next_probe_s=delay)

    def succeeded(self) -> None:
        if self._down_since is not None:
            self._log.warning(
                "dependency_recovered",
                down_s=round(trio.current_time() - self._down_since, 3),
                probes=self._failures,
            )
        self._down_since = None
        self._failures = 0

    def statistics(self) -> GateStatistics:
        return GateStatistics(
            up=self.up, failures=self._failures, outages=self._outages, last_error=self._last_error
        )
