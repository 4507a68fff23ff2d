"""``python -m tests._rate_worker REDIS_URL PREFIX ATTEMPTS``: take ATTEMPTS requests
from one shared limit (1 per hour, burst 20) on real Redis, with Redis's clock, and
print how many were allowed. Two of these at once must be allowed 20 in all."""

from __future__ import annotations

import sys

import trio
import trio_asyncio

from adapters import RateLimiter, open_redis
from config import RateLimit, RedisSettings

LIMIT = RateLimit(count=1, period_s=3600.0, burst=20)


async def main(url: str, prefix: str, attempts: int) -> int:
    async with open_redis(RedisSettings(url=url, prefix=prefix), cleanup_s=1.0) as cache:
        limiter = RateLimiter(cache)
        allowed = 0
        for _ in range(attempts):
            decision = await limiter.check([("shared", "one", LIMIT)])
            allowed += decision.allowed
        assert limiter.fail_open == 0
        return allowed


if __name__ == "__main__":
    url, prefix, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3])

    async def run() -> None:
        async with trio_asyncio.open_loop():
            print(await main(url, prefix, attempts))

    trio.run(run)
