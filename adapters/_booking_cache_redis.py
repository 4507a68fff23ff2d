"""``BookingCache`` on Redis: every call one round trip (a Lua script or MGET).

Keys, under the process's prefix: ``slot:{consultant}:{epoch}`` (a slot lock, its
value the holder), ``idem:{key}`` (a stored answer), ``pending:{id}`` (a pending
booking's record), ``avail:{type}:{showroom|-}:{day}`` and ``avail-stale:...`` (the
fresh and stale copies of a day), ``avail-gen:{day}`` (the day's generation),
``schedule`` (the roster's copy); the channel ``avail-changed`` carries the days of
every applied change. Redis down: every call raises the adapter's
``ConnectionLost`` / ``OperationTimeout`` (``RedisCache``), which the actors treat as
"no fast path".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

import structlog
import trio

from adapters._booking_cache import (
    AvailabilityCopy,
    AvailabilityDay,
    CacheChanges,
    ChangeFollower,
    LockReply,
    LockRequest,
    SlotRef,
)
from adapters._redis import Cache, Client, RedisCache

__all__ = ["RedisBookingCache"]

log = structlog.get_logger("adapters.booking_cache")

_ACQUIRE = """
-- ARGV: ttl_ms, then per request: idem key ('' for none), value, n, n lock keys.
-- Per request: {'replay', stored response} | {'locked', i, free} where i is the
-- lock taken (1-based) and free the other keys nobody holds ("2,5") | {'taken'}.
-- A refusal here is not stored as the key's answer: nothing was attempted (and the
-- key may have an answer in Postgres that Redis has lost).
local ttl = ARGV[1]
local out = {}
local i = 2
while i <= #ARGV do
  local idem, value, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  i = i + 3
  local stored = false
  if idem ~= '' then stored = redis.call('GET', idem) end
  if stored then
    table.insert(out, {'replay', stored})
  else
    local got = 0
    local free = {}
    for j = 1, n do
      local key = ARGV[i + j - 1]
      local holder = redis.call('GET', key)
      if got == 0 and (holder == false or holder == value) then
        redis.call('SET', key, value, 'PX', ttl)
        got = j
      elseif holder == false then
        table.insert(free, tostring(j))
      end
    end
    if got > 0 then
      table.insert(out, {'locked', tostring(got), table.concat(free, ',')})
    else
      table.insert(out, {'taken'})
    end
  end
  i = i + n
end
return out
"""

_HOLD = """
-- KEYS: lock, idem, pending. ARGV: value, hold_ms, keep_ms, response, booking.
-- Extends our lock and records the pending booking; 0 if the lock is not ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) == false then
    return 0
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3])
redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[2])
return 1
"""

_RELEASE = """
-- KEYS: lock, pending. ARGV: value. Drops the pending record and our lock (the
-- stored answer stays until it expires: a retry must find it before any lock).
redis.call('DEL', KEYS[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
"""

_APPLY = """
-- After a change: store answers, release our locks, drop stale entries, bump
-- generations and publish the bumped days. ARGV: keep_ms, bump_ttl_ms, #answers,
-- #releases, #deletes, #bumps, the days' message, its channel, then (key, answer)
-- pairs, (lock, value) pairs, keys to delete, generation keys.
local keep, bump_ttl = ARGV[1], ARGV[2]
local na, nr, nd, nb = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local i = 9
for _ = 1, na do
  redis.call('SET', ARGV[i], ARGV[i + 1], 'PX', keep, 'NX')
  i = i + 2
end
for _ = 1, nr do
  if redis.call('GET', ARGV[i]) == ARGV[i + 1] then redis.call('DEL', ARGV[i]) end
  i = i + 2
end
for _ = 1, nd do
  redis.call('DEL', ARGV[i])
  i = i + 1
end
for _ = 1, nb do
  redis.call('INCR', ARGV[i])
  redis.call('PEXPIRE', ARGV[i], bump_ttl)
  i = i + 1
end
if nb > 0 then redis.call('PUBLISH', ARGV[8], ARGV[7]) end
return 1
"""

_STORE_IF_UNCHANGED = """
-- ARGV: (key, value, ttl_ms, generation key, generation read before computing) * n.
-- A value computed before a change is not stored after it.
for i = 1, #ARGV, 5 do
  local now = redis.call('GET', ARGV[i + 3]) or '0'
  if now == ARGV[i + 4] then
    redis.call('SET', ARGV[i], ARGV[i + 1], 'PX', ARGV[i + 2])
  end
end
return 1
"""


class RedisBookingCache:
    """``BookingCache`` on Redis. ``applied`` is told the days of each change this
    process applies, as it is applied (its followers need not wait for the message
    the change publishes to every process)."""

    def __init__(
        self, cache: Cache, *, applied: Callable[[Sequence[date]], None] | None = None
    ) -> None:
        self._cache = cache
        self._applied = applied

    @property
    def changes_channel(self) -> str:
        """Where each applied change publishes its days (ISO dates, comma-separated)."""
        return self._cache.key("avail-changed")

    def _slot(self, slot: SlotRef) -> str:
        return self._cache.key("slot", slot.consultant_id, str(int(slot.start.timestamp())))

    def _day(self, name: str, day: AvailabilityDay) -> str:
        return self._cache.key(name, day.kind, day.showroom_id or "-", day.day.isoformat())

    def _generation(self, day: AvailabilityDay) -> str:
        return self._cache.key("avail-gen", day.day.isoformat())

    async def take_locks(self, requests: Sequence[LockRequest], ttl_s: float) -> list[LockReply]:
        args: list[str | int] = [round(ttl_s * 1000)]
        for r in requests:
            answer = "" if r.answer_key is None else self._cache.key("idem", r.answer_key)
            args += [answer, r.holder, len(r.slots), *map(self._slot, r.slots)]

        async def operation(client: Client) -> list[LockReply]:
            replies: list[LockReply] = []
            for reply in await client.register_script(_ACQUIRE)(args=args):
                kind = reply[0]
                if kind == b"replay":
                    replies.append(LockReply(replay=reply[1].decode()))
                elif kind == b"locked":
                    free = tuple(int(j) - 1 for j in reply[2].decode().split(",") if j)
                    replies.append(LockReply(locked=int(reply[1]) - 1, free=free))
                else:
                    replies.append(LockReply())
            return replies

        return await self._cache.run(operation)

    async def hold_pending(
        self,
        slot: SlotRef,
        holder: str,
        *,
        booking_id: str,
        answer: str,
        record: Mapping[str, Any],
        hold_s: float,
        keep_s: float,
    ) -> bool:
        keys = [
            self._slot(slot),
            self._cache.key("idem", holder),
            self._cache.key("pending", booking_id),
        ]
        args: list[str | int] = [
            holder,
            round(hold_s * 1000),
            round(keep_s * 1000),
            answer,
            json.dumps(record),
        ]

        async def operation(client: Client) -> bool:
            return bool(await client.register_script(_HOLD)(keys=keys, args=args))

        return await self._cache.run(operation)

    async def pending(self, booking_id: str) -> Mapping[str, Any] | None:
        key = self._cache.key("pending", booking_id)

        async def operation(client: Client) -> Any:
            return await client.get(key)

        raw = await self._cache.run(operation)
        return None if raw is None else dict(json.loads(raw))

    async def release_pending(self, slot: SlotRef, holder: str, booking_id: str) -> None:
        keys = [self._slot(slot), self._cache.key("pending", booking_id)]

        async def operation(client: Client) -> None:
            await client.register_script(_RELEASE)(keys=keys, args=[holder])

        await self._cache.run(operation)

    async def apply(self, changes: CacheChanges, *, keep_s: float, bump_ttl_s: float) -> None:
        if not changes:
            return
        key = self._cache.key
        answers = [(key("idem", k), a) for k, a in changes.answers]
        releases = [(self._slot(s), holder) for s, holder in changes.releases]
        deletes = [self._slot(s) for s in changes.frees]
        deletes += [self._day("avail", d) for d in changes.stale]
        bumps = [key("avail-gen", d.isoformat()) for d in changes.bumps]
        args: list[str | int] = [round(keep_s * 1000), round(bump_ttl_s * 1000)]
        args += [len(answers), len(releases), len(deletes), len(bumps)]
        args += [",".join(d.isoformat() for d in changes.bumps), self.changes_channel]
        for pair in (*answers, *releases):
            args += pair
        args += [*deletes, *bumps]

        async def operation(client: Client) -> None:
            await client.register_script(_APPLY)(args=args)

        try:
            await self._cache.run(operation)
        finally:  # applied or not, what this process holds of these days is stale
            if self._applied is not None and changes.bumps:
                self._applied(changes.bumps)

    async def follow_changes(self, follower: ChangeFollower) -> None:
        cache = self._cache
        if not isinstance(cache, RedisCache):  # nothing to subscribe to: never follows
            await trio.sleep_forever()

        def heard(text: str) -> None:
            try:
                days = [date.fromisoformat(part) for part in text.split(",") if part]
            except ValueError:  # not ours: whatever it changed, forget everything
                log.warning("availability_change_unreadable", message=text[:100])
                follower.follow()
                return
            follower.changed(days)

        await cache.follow(
            self.changes_channel,
            on_message=heard,
            on_subscribed=follower.follow,
            on_lost=follower.unfollow,
        )

    async def _values(self, keys: Sequence[str]) -> list[str | None]:
        async def operation(client: Client) -> list[str | None]:
            if not keys:
                return []
            values = await client.mget(keys)
            return [v.decode() if isinstance(v, bytes) else v for v in values]

        return await self._cache.run(operation)

    async def read_availability(
        self, days: Sequence[AvailabilityDay]
    ) -> tuple[list[str | None], list[str]]:
        keys = [self._day("avail", d) for d in days] + [self._generation(d) for d in days]
        values = await self._values(keys)
        return values[: len(days)], [g or "0" for g in values[len(days) :]]

    async def stale_availability(self, days: Sequence[AvailabilityDay]) -> list[str | None]:
        return await self._values([self._day("avail-stale", d) for d in days])

    async def keep_availability(self, copies: Sequence[AvailabilityCopy]) -> None:
        args: list[str | int] = []
        for c in copies:
            generation = self._generation(c.day)
            for name, ttl_s in (("avail", c.fresh_s), ("avail-stale", c.stale_s)):
                args += [self._day(name, c.day), c.text, round(ttl_s * 1000), generation, c.seen]
        if not args:
            return

        async def operation(client: Client) -> None:
            await client.register_script(_STORE_IF_UNCHANGED)(args=args)

        await self._cache.run(operation)

    async def held(self, slots: Sequence[SlotRef]) -> list[bool]:
        return [v is not None for v in await self._values([self._slot(s) for s in slots])]

    async def schedule_copy(self) -> str | None:
        [copy] = await self._values([self._cache.key("schedule")])
        return copy

    async def keep_schedule_copy(self, text: str) -> None:
        key = self._cache.key("schedule")

        async def operation(client: Client) -> None:
            await client.set(key, text)

        await self._cache.run(operation)
