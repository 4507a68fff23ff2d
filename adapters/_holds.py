"""Slot locks, pending bookings and cached availability in Redis.

Redis here is a fast path, never the truth (the EXCLUDE constraint is):

- **Slot locks** ``slot:{consultant}:{epoch}`` hold the request's idempotency key for
  ``lock_s``: a concurrent attempt at the same consultant-slot is refused at once
  instead of queueing on the database. A retry with the same key finds its own
  lock and goes on. Without Redis the constraint alone decides.
- **Pending bookings** (Postgres down): the lock is extended to ``pending_hold_s``,
  the booking is stored under ``pending:{id}`` and the first response under
  ``idem:{key}``, atomically (one script), until the replay job writes it.
- **Availability** per (type, showroom, local day): a fresh copy (short TTL, deleted
  on every booking change) and a stale copy served while Postgres is down.

All of a batch's locks are taken by one script call: one round trip per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from adapters._redis import CacheOperation, Client

__all__ = [
    "CacheChanges",
    "LockReply",
    "LockRequest",
    "acquire_locks",
    "cached_values",
    "hold_pending",
    "release_pending",
    "store_if_unchanged",
]

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


@dataclass(frozen=True, slots=True)
class LockRequest:
    idempotency_key: str  # the Redis key of the stored response ('' : none)
    value: str  # the lock's value: the scoped idempotency key
    locks: tuple[str, ...]  # lock keys, in the order to try


@dataclass(frozen=True, slots=True)
class LockReply:
    replay: str | None = None  # a stored response
    locked: int | None = None  # index into ``locks`` of the lock now held
    free: tuple[int, ...] = ()  # the other locks nobody held (still fair game)


def acquire_locks(requests: Sequence[LockRequest], ttl_s: float) -> CacheOperation[list[LockReply]]:
    """Per request: its stored response, or the first lock it could take (and which
    of the others nobody holds), or neither."""

    async def operation(client: Client) -> list[LockReply]:
        args: list[str | int] = [round(ttl_s * 1000)]
        for r in requests:
            args += [r.idempotency_key, r.value, len(r.locks), *r.locks]
        script = client.register_script(_ACQUIRE)
        replies: list[LockReply] = []
        for reply in await script(args=args):
            kind = reply[0]
            if kind == b"replay":
                replies.append(LockReply(replay=reply[1].decode()))
            elif kind == b"locked":
                free = tuple(int(j) - 1 for j in reply[2].decode().split(",") if j)
                replies.append(LockReply(locked=int(reply[1]) - 1, free=free))
            else:
                replies.append(LockReply())
        return replies

    return operation


def hold_pending(
    lock: str,
    value: str,
    idempotency_key: str,
    pending_key: str,
    *,
    response: str,
    booking: str,
    hold_s: float,
    keep_s: float,
) -> CacheOperation[bool]:
    """Keep the slot for a pending booking; False if the lock is someone else's."""

    async def operation(client: Client) -> bool:
        script = client.register_script(_HOLD)
        keys = [lock, idempotency_key, pending_key]
        args: list[str | int] = [
            value,
            round(hold_s * 1000),
            round(keep_s * 1000),
            response,
            booking,
        ]
        return bool(await script(keys=keys, args=args))

    return operation


def release_pending(lock: str, value: str, pending_key: str) -> CacheOperation[None]:
    async def operation(client: Client) -> None:
        await client.register_script(_RELEASE)(keys=[lock, pending_key], args=[value])

    return operation


_APPLY = """
-- After a change: store answers, release our locks, drop stale entries, bump
-- generations. ARGV: keep_ms, bump_ttl_ms, #answers, #releases, #deletes, #bumps, then
-- (key, answer) pairs, (lock, value) pairs, keys to delete, generation keys.
local keep, bump_ttl = ARGV[1], ARGV[2]
local na, nr, nd, nb = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local i = 7
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


@dataclass(slots=True)
class CacheChanges:
    """What a booking change does to Redis, applied in one round trip (``apply``)."""

    answers: list[tuple[str, str]] = field(default_factory=list)  # idem key, stored answer
    releases: list[tuple[str, str]] = field(default_factory=list)  # lock key, our value
    deletes: list[str] = field(default_factory=list)
    bumps: list[str] = field(default_factory=list)  # generation counters

    def __bool__(self) -> bool:
        return bool(self.answers or self.releases or self.deletes or self.bumps)

    def apply(self, *, keep_s: float, bump_ttl_s: float) -> CacheOperation[None]:
        args: list[str | int] = [round(keep_s * 1000), round(bump_ttl_s * 1000)]
        args += [len(self.answers), len(self.releases), len(self.deletes), len(self.bumps)]
        for pair in (*self.answers, *self.releases):
            args += pair
        args += [*self.deletes, *self.bumps]

        async def operation(client: Client) -> None:
            await client.register_script(_APPLY)(args=args)

        return operation


def store_if_unchanged(
    items: Sequence[tuple[str, str, float, str, str]],
) -> CacheOperation[None]:
    """SET each (key, value, ttl_s) unless its generation moved since it was read."""

    async def operation(client: Client) -> None:
        args: list[str | int] = []
        for key, value, ttl_s, generation, seen in items:
            args += [key, value, round(ttl_s * 1000), generation, seen]
        if args:
            await client.register_script(_STORE_IF_UNCHANGED)(args=args)

    return operation


def cached_values(keys: Sequence[str]) -> CacheOperation[list[bytes | None]]:
    async def operation(client: Client) -> list[bytes | None]:
        if not keys:
            return []
        values = await client.mget(keys)
        return [v.encode() if isinstance(v, str) else v for v in values]

    return operation
