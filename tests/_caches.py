"""Test doubles around the real Redis cache: they forward to it and change one thing."""

from __future__ import annotations

from adapters import Cache, CacheOperation, GateStatistics
from supervisors import DependencyError


class ForwardingCache:
    """The real cache, as is; subclasses change ``run``."""

    def __init__(self, inner: Cache) -> None:
        self._inner = inner

    def key(self, *parts: str) -> str:
        return self._inner.key(*parts)

    async def run[T](self, operation: CacheOperation[T], *, waits_s: float = 0.0) -> T:
        return await self._inner.run(operation, waits_s=waits_s)

    async def ping(self) -> None:
        await self._inner.ping()

    def outage(self) -> str | None:
        return self._inner.outage()

    def statistics(self) -> GateStatistics:
        return self._inner.statistics()


class CountingCache(ForwardingCache):
    """The real cache, counting the operations run through it."""

    def __init__(self, inner: Cache) -> None:
        super().__init__(inner)
        self.operations = 0

    async def run[T](self, operation: CacheOperation[T], *, waits_s: float = 0.0) -> T:
        self.operations += 1
        return await super().run(operation, waits_s=waits_s)


class BrokenCache(ForwardingCache):
    """The real cache's keys, but every operation fails as a bug would (not an
    outage: say a Lua script's error)."""

    async def run[T](self, operation: CacheOperation[T], *, waits_s: float = 0.0) -> T:
        raise DependencyError("ERR a script bug", dependency="redis")


class UntouchedCache:
    """For a test whose code path must never reach Redis: any use fails the test."""

    def key(self, *parts: str) -> str:
        return ":".join(parts)

    async def run[T](self, operation: CacheOperation[T], *, waits_s: float = 0.0) -> T:
        raise AssertionError("this test's code path must not reach Redis")

    async def ping(self) -> None:
        raise AssertionError("this test's code path must not reach Redis")

    def outage(self) -> str | None:
        return None

    def statistics(self) -> GateStatistics:
        raise AssertionError("this test's code path must not reach Redis")
