"""Rate limits: GCRA (the generic cell rate algorithm) in one Redis script.

Each limit keeps one value in Redis, its theoretical arrival time (TAT). A request at
``now`` is allowed if ``TAT - now <= tolerance`` (tolerance = interval x (burst - 1)),
and then moves the TAT on by one interval: a burst of ``burst`` requests, then one
per interval, with no counters or windows to reset. A decision checks every limit
that applies (the client's IP, the account) at once, and takes from them only if all
allow it: a request refused by one limit costs nothing from the others.

Times are integer microseconds, exact in Lua's doubles: by default Redis's own clock
(``TIME``: every process sees the same time); a test gives a clock (trio's virtual
one).

Redis down or slow (its gate refuses): fail open, every request is allowed, counted
in ``fail_open``, logged once per outage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from adapters._redis import Cache, Client
from config import RateLimit
from supervisors import LomashError

__all__ = ["Decision", "RateLimiter"]

log = structlog.get_logger("adapters.rate_limit")

_US = 1_000_000

# KEYS: a limit each. ARGV[1]: now in us ("" = Redis TIME); then per limit its
# interval and tolerance in us. Reply: {allowed, index of the limit reported,
# remaining, reset_us, retry_us} (numbers as strings: Lua would truncate them).
_GCRA = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local tats = {}
local denied, retry = 0, -1
for i = 1, #KEYS do
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tats[i] = tat
  if tat - now > tolerance then
    local wait = tat - tolerance - now
    if wait > retry then denied, retry = i, wait end
  end
end
if denied > 0 then
  return {'0', tostring(denied), '0', string.format('%d', tats[denied] - now),
          string.format('%d', retry)}
end
local best, fewest, reset = 1, nil, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tats[i] + interval
  redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000))
  local remaining = math.floor((tolerance - (tat - now)) / interval) + 1
  if fewest == nil or remaining < fewest then
    best, fewest, reset = i, remaining, tat - now
  end
end
return {'1', tostring(best), tostring(fewest), string.format('%d', reset), '0'}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    """``allowed``, and the numbers of the tightest limit (the one that refused, or
    the one with the fewest requests left) for the ``RateLimit-*`` headers."""

    allowed: bool
    name: str = ""
    limit: RateLimit | None = None
    remaining: int = 0
    reset_s: float = 0.0  # until the limit is full again
    retry_after_s: float = 0.0  # until one more request is allowed (refused only)
    failed_open: bool = False

    def headers(self) -> dict[str, str]:
        if self.limit is None:
            return {}
        return {
            "RateLimit-Limit": str(self.limit.burst),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(math.ceil(self.reset_s)),
            "RateLimit-Policy": f"{self.limit.count};w={self.limit.period_s:g}",
        }


_OPEN = Decision(True, failed_open=True)


class RateLimiter:
    def __init__(self, cache: Cache, *, clock: Callable[[], float] | None = None) -> None:
        self._cache = cache
        self._clock = clock
        self._script: Any = None
        self.fail_open = 0  # decisions allowed because Redis could not be asked
        self._failing = False

    async def check(self, limits: Sequence[tuple[str, str, RateLimit]]) -> Decision:
        """One decision over ``limits``: (name, subject, limit) each, e.g.
        ("login_ip", "203.0.113.9", RateLimit(20, 60.0, 20))."""
        if not limits:
            return Decision(True)
        keys = [self._cache.key("rl", name, subject) for name, subject, _ in limits]
        now = "" if self._clock is None else str(round(self._clock() * _US))
        args: list[str | int] = [now]
        for _, _, limit in limits:
            interval = round(limit.interval_s * _US)
            args += [interval, interval * (limit.burst - 1)]

        async def operation(client: Client) -> Any:
            if self._script is None:
                self._script = client.register_script(_GCRA)
            return await self._script(keys=keys, args=args, client=client)

        try:
            reply = await self._cache.run(operation)
        except LomashError as error:
            self.fail_open += 1
            if not self._failing:
                self._failing = True
                log.warning("rate_limits_fail_open", error=error.message)
            return _OPEN
        if self._failing:
            self._failing = False
            log.info("rate_limits_restored", failed_open=self.fail_open)
        allowed, index, remaining, reset_us, retry_us = (int(part) for part in reply)
        name, _, limit = limits[index - 1]
        return Decision(
            allowed=allowed == 1,
            name=name,
            limit=limit,
            remaining=remaining,
            reset_s=reset_us / _US,
            retry_after_s=retry_us / _US,
        )
