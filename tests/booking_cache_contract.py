"""The ``BookingCache`` contract: what the booking actors rely on from the fast path.

``BookingCacheContract`` is inherited by a test class whose ``cache_factory`` fixture
opens a fresh, empty cache of one implementation, with ``wait(seconds)`` to let time
pass on that cache's clock (trio's virtual clock for the memory twin; real time for
Redis, whose TTLs are its own). tests/test_booking_cache_contract.py runs it on
``RedisBookingCache`` (real Redis) and ``MemoryBookingCache``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import trio

from adapters import (
    AvailabilityCopy,
    AvailabilityDay,
    BookingCache,
    CacheChanges,
    LockReply,
    LockRequest,
    SlotRef,
)


@dataclass(frozen=True, slots=True)
class CacheUnderTest:
    cache: BookingCache
    wait: Callable[[float], Awaitable[None]]  # let this much time pass on its clock


type CacheFactory = Callable[[], AbstractAsyncContextManager[CacheUnderTest]]

START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=7)
A, B, C = (SlotRef(c, START) for c in ("grace-okafor", "daniel-price", "amira-khan"))
DAY = AvailabilityDay("SHOWROOM", "leeds", START.date())
ONLINE = AvailabilityDay("ONLINE", None, START.date())
TTL_S = 1.0


@dataclass
class Follower:
    """A ``ChangeFollower`` that writes down what it is told."""

    following: bool = False
    heard: list[list[date]] = field(default_factory=list)

    def changed(self, days: Iterable[date]) -> None:
        self.heard.append(list(days))

    def follow(self) -> None:
        self.following = True

    def unfollow(self) -> None:
        self.following = False


async def until(c: CacheUnderTest, done: Callable[[], bool], *, most: int = 500) -> None:
    """Let time pass on the cache's clock, a little at a time, until ``done()``."""
    for _ in range(most):
        if done():
            return
        await c.wait(0.01)
    raise AssertionError("never happened")


def request(holder: str, *slots: SlotRef, answer: bool = True) -> LockRequest:
    return LockRequest(answer_key=holder if answer else None, holder=holder, slots=slots)


class BookingCacheContract:
    async def test_locks_go_to_the_first_holder_and_say_which_others_are_free(
        self, cache_factory: CacheFactory
    ) -> None:
        """One script call for a batch: each request gets the first slot nobody else
        holds (its own lock counts as free for it) and the free others."""
        async with cache_factory() as c:
            first = await c.cache.take_locks([request("k1", A, B, C)], TTL_S)
            replies = await c.cache.take_locks(
                [request("k2", A, B), request("k1", A), request("k3", A)], TTL_S
            )
        assert first == [LockReply(locked=0, free=(1, 2))]
        assert replies == [LockReply(locked=1), LockReply(locked=0), LockReply()]

    async def test_a_lock_expires_after_its_ttl(self, cache_factory: CacheFactory) -> None:
        """Past ``ttl_s`` a lock is gone: another holder takes the slot."""
        async with cache_factory() as c:
            await c.cache.take_locks([request("k1", A)], TTL_S)
            held = await c.cache.held([A, B])
            await c.wait(TTL_S * 1.5)
            after = await c.cache.take_locks([request("k2", A)], TTL_S)
        assert held == [True, False]
        assert after == [LockReply(locked=0)]

    async def test_a_stored_answer_wins_over_every_lock(self, cache_factory: CacheFactory) -> None:
        """An answer stored under a key is replayed, whatever the slots; the first answer
        stored stays; a request without an answer key never sees it."""
        async with cache_factory() as c:
            changes = CacheChanges(answers=[("k1", "first")])
            await c.cache.apply(changes, keep_s=60, bump_ttl_s=60)
            await c.cache.apply(CacheChanges(answers=[("k1", "second")]), keep_s=60, bump_ttl_s=60)
            replayed = await c.cache.take_locks([request("k1", A)], TTL_S)
            plain = await c.cache.take_locks([request("k1", B, answer=False)], TTL_S)
        assert replayed == [LockReply(replay="first")]
        assert plain == [LockReply(locked=0)]

    async def test_release_frees_only_our_own_lock(self, cache_factory: CacheFactory) -> None:
        """A release by a holder that is not the lock's leaves it; ``frees`` drops any."""
        async with cache_factory() as c:
            await c.cache.take_locks([request("k1", A), request("k2", B)], 60)
            changes = CacheChanges(releases=[(A, "not-k1"), (B, "k2")])
            await c.cache.apply(changes, keep_s=60, bump_ttl_s=60)
            after_release = await c.cache.held([A, B])
            await c.cache.apply(CacheChanges(frees=[A]), keep_s=60, bump_ttl_s=60)
            after_free = await c.cache.held([A])
        assert after_release == [True, False]
        assert after_free == [False]

    async def test_a_pending_hold_keeps_the_slot_the_answer_and_the_record(
        self, cache_factory: CacheFactory
    ) -> None:
        """hold_pending on our lock: the slot held past the lock's TTL for ``hold_s``,
        the answer replayed, the record readable; refused if another holds the slot;
        release_pending drops the record and the lock but not the answer."""
        record = {"id": "b1", "consultant_id": "grace-okafor"}
        async with cache_factory() as c:
            await c.cache.take_locks([request("k1", A), request("k2", B)], TTL_S)

            async def hold(slot: SlotRef, holder: str, booking_id: str) -> bool:
                return await c.cache.hold_pending(
                    slot,
                    holder,
                    booking_id=booking_id,
                    answer="202 body",
                    record={**record, "id": booking_id},
                    hold_s=TTL_S * 3,
                    keep_s=60,
                )

            assert await hold(A, "k1", "b1")
            assert not await hold(B, "k1", "b2")  # k2's lock
            await c.wait(TTL_S * 1.5)  # past the lock's own TTL
            assert await c.cache.held([A]) == [True]
            assert await c.cache.pending("b1") == record
            assert await c.cache.pending("b2") is None
            assert await c.cache.take_locks([request("k1", C)], TTL_S) == [
                LockReply(replay="202 body")
            ]
            await c.cache.release_pending(A, "k1", "b1")
            assert await c.cache.held([A]) == [False]
            assert await c.cache.pending("b1") is None
            assert await c.cache.take_locks([request("k1", A)], TTL_S) == [
                LockReply(replay="202 body")
            ]

    async def test_a_pending_record_expires_with_its_hold(
        self, cache_factory: CacheFactory
    ) -> None:
        """Past ``hold_s`` the record and the slot are gone (the replay decides alone)."""
        async with cache_factory() as c:
            await c.cache.take_locks([request("k1", A)], TTL_S)
            await c.cache.hold_pending(
                A, "k1", booking_id="b1", answer="a", record={"id": "b1"}, hold_s=TTL_S, keep_s=60
            )
            await c.wait(TTL_S * 1.5)
            assert await c.cache.pending("b1") is None
            assert await c.cache.held([A]) == [False]

    async def test_a_day_computed_before_a_change_is_not_kept_after_it(
        self, cache_factory: CacheFactory
    ) -> None:
        """keep_availability with the generation read before computing: kept (fresh
        and stale) if nothing changed since; dropped if the day's generation moved."""
        async with cache_factory() as c:
            fresh, generations = await c.cache.read_availability([DAY, ONLINE])
            assert (fresh, generations) == ([None, None], ["0", "0"])
            bump = CacheChanges(bumps=[DAY.day])
            await c.cache.apply(bump, keep_s=60, bump_ttl_s=60)
            await c.cache.keep_availability(
                [AvailabilityCopy(DAY, "old list", fresh_s=60, stale_s=120, seen="0")]
            )
            assert await c.cache.read_availability([DAY]) == ([None], ["1"])
            await c.cache.keep_availability(
                [AvailabilityCopy(DAY, "new list", fresh_s=60, stale_s=120, seen="1")]
            )
            assert await c.cache.read_availability([DAY]) == (["new list"], ["1"])
            assert await c.cache.stale_availability([DAY, ONLINE]) == ["new list", None]

    async def test_a_change_drops_the_fresh_copy_and_keeps_the_stale_one(
        self, cache_factory: CacheFactory
    ) -> None:
        """``stale`` days lose their fresh copy; the stale copy outlives the fresh one."""
        async with cache_factory() as c:
            await c.cache.keep_availability(
                [AvailabilityCopy(DAY, "list", fresh_s=TTL_S, stale_s=60, seen="0")]
            )
            await c.cache.apply(CacheChanges(stale=[DAY]), keep_s=60, bump_ttl_s=60)
            dropped = await c.cache.read_availability([DAY])
            await c.cache.keep_availability(
                [AvailabilityCopy(DAY, "list", fresh_s=TTL_S, stale_s=60, seen="0")]
            )
            await c.wait(TTL_S * 1.5)
            expired = await c.cache.read_availability([DAY])
            stale = await c.cache.stale_availability([DAY])
        assert dropped == ([None], ["0"])
        assert expired == ([None], ["0"])
        assert stale == ["list"]

    async def test_the_schedule_copy_is_kept_until_replaced(
        self, cache_factory: CacheFactory
    ) -> None:
        """The roster's copy: none at first, the last one kept afterwards."""
        async with cache_factory() as c:
            assert await c.cache.schedule_copy() is None
            await c.cache.keep_schedule_copy("rows 1")
            await c.cache.keep_schedule_copy("rows 2")
            await c.wait(TTL_S * 1.5)
            assert await c.cache.schedule_copy() == "rows 2"

    async def test_a_follower_is_told_the_days_of_every_applied_change(
        self, cache_factory: CacheFactory
    ) -> None:
        """Once following, each change that bumps days tells them (in order); one that
        bumps none tells nothing; cancelled, the follower is unfollowed."""
        later = [START.date() + timedelta(days=1), START.date() + timedelta(days=2)]
        follower = Follower()
        async with cache_factory() as c, trio.open_nursery() as nursery:
            nursery.start_soon(c.cache.follow_changes, follower)
            await until(c, lambda: follower.following)
            await c.cache.apply(
                CacheChanges(stale=[DAY], bumps=[DAY.day]), keep_s=60, bump_ttl_s=60
            )
            await c.cache.apply(CacheChanges(answers=[("k1", "a")]), keep_s=60, bump_ttl_s=60)
            await c.cache.apply(CacheChanges(bumps=later), keep_s=60, bump_ttl_s=60)
            await until(c, lambda: len(follower.heard) >= 2)
            nursery.cancel_scope.cancel()
        assert follower.heard == [[DAY.day], later]
        assert not follower.following
