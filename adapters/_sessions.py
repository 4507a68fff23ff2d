"""Login sessions in Redis: one per login, its refresh tokens stored hashed, rotated
on every use (one script: one round trip, atomic).

    sess:{sid}   hash  account_id, email, name, phone   (TTL: refresh_ttl, renewed)
    rt:{sha256}  hash  sid, state (live | used), used_at (us, Redis clock)

A session is its family of refresh tokens: rotating marks the presented token used
and makes a new live one. A used token presented again within ``overlap_s`` (two tabs
refreshing at once) gets another token; later, it is a stolen token being replayed,
and the session is deleted, so every token of the family (and the access tokens of
the session, at their next session check) stop working. Times are Redis's own clock
(``TIME``), the one clock every process shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

from adapters._redis import Cache, Client, RedisCache

__all__ = ["Rotated", "SessionMemory", "SessionProfile", "Sessions"]


@dataclass(frozen=True, slots=True)
class SessionProfile:
    """Who a session belongs to: what access tokens carry, kept so a refresh needs no
    database."""

    account_id: str
    email: str
    name: str
    phone: str | None


@dataclass(frozen=True, slots=True)
class Rotated:
    """What a refresh found: ``ok`` (a new token is live), ``invalid`` (no such token),
    ``revoked`` (its session is gone), ``reused`` (theft: the session was revoked now)."""

    outcome: str
    session_id: str | None = None
    profile: SessionProfile | None = None


_ROTATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local sid = redis.call('HGET', KEYS[1], 'sid')
if not sid then return {'invalid'} end
local session = ARGV[1] .. sid
if redis.call('EXISTS', session) == 0 then return {'revoked', sid} end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'used' then
  local used_at = tonumber(redis.call('HGET', KEYS[1], 'used_at'))
  if now - used_at > tonumber(ARGV[2]) then
    redis.call('DEL', session)
    redis.call('PUBLISH', ARGV[4], sid)
    return {'reused', sid}
  end
else
  redis.call('HSET', KEYS[1], 'state', 'used', 'used_at', now)
end
redis.call('HSET', KEYS[2], 'sid', sid, 'state', 'live')
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', session, ARGV[3])
local profile = redis.call('HMGET', session, 'account_id', 'email', 'name', 'phone')
return {'ok', sid, profile[1], profile[2], profile[3], profile[4]}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SessionMemory:
    """Sessions seen alive lately, so an access token's session check need not ask
    Redis on every request (``LOMASH_AUTH_SESSION_MEMORY_S``).

    Trusted only while ``following``: subscribed to the channel every session's end
    is published on (logout, a replayed refresh token), whatever process ended it. A
    session heard ending is forgotten at once; one seen alive is trusted for at most
    ``memory_s`` (expiry by TTL is not published). When the subscription is lost
    nothing is trusted until it is back, and then everything seen before is forgotten
    (ends may have been missed meanwhile). At most ``capacity`` sessions are kept,
    the oldest dropped first: a flood of valid tokens costs bounded memory.
    """

    def __init__(self, memory_s: float, capacity: int = 100_000) -> None:
        self.memory_s = memory_s
        self.capacity = capacity
        self.following = False
        self._seen: dict[str, float] = {}

    def alive(self, session_id: str) -> bool:
        """Seen alive within ``memory_s`` and not heard ending since."""
        if not self.following:
            return False
        seen = self._seen.get(session_id)
        return seen is not None and trio.current_time() - seen < self.memory_s

    def keep(self, session_id: str) -> None:
        if not self.following or self.memory_s <= 0:
            return
        seen = self._seen
        seen.pop(session_id, None)
        seen[session_id] = trio.current_time()
        if len(seen) > self.capacity:
            del seen[next(iter(seen))]

    def forget(self, session_id: str) -> None:
        self._seen.pop(session_id, None)

    def follow(self) -> None:
        """Subscribed (again): trust from now on, nothing seen before."""
        self._seen.clear()
        self.following = True

    def unfollow(self) -> None:
        self.following = False
        self._seen.clear()


class Sessions:
    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._rotate: Any = None

    @property
    def ends_channel(self) -> str:
        """Where the id of every session that ends (logout, theft) is published."""
        return self._cache.key("sessions", "ended")

    async def follow_ends(self, memory: SessionMemory) -> None:
        """Forever: keep ``memory`` subscribed to the ends channel (a Redis cache only;
        with another, ``memory`` never follows and every check asks). A lost
        subscription is tried again after ``reconnect_min_s``, doubling up to
        ``reconnect_max_s`` while it keeps failing."""
        cache = self._cache
        if not isinstance(cache, RedisCache):
            await trio.sleep_forever()
        await cache.follow(
            self.ends_channel,
            on_message=memory.forget,
            on_subscribed=memory.follow,
            on_lost=memory.unfollow,
        )

    def _session(self, session_id: str) -> str:
        return self._cache.key("sess", session_id)

    def _token(self, token_hash: bytes) -> str:
        return self._cache.key("rt", token_hash.hex())

    async def create(
        self, session_id: str, token_hash: bytes, profile: SessionProfile, *, ttl_s: float
    ) -> None:
        session, token = self._session(session_id), self._token(token_hash)
        ttl_ms = round(ttl_s * 1000)
        fields: dict[Any, Any] = {
            "account_id": profile.account_id,
            "email": profile.email,
            "name": profile.name,
            "phone": profile.phone or "",
        }

        async def operation(client: Client) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(session, mapping=fields)
                pipe.pexpire(session, ttl_ms)
                pipe.hset(token, mapping={"sid": session_id, "state": "live"})
                pipe.pexpire(token, ttl_ms)
                await pipe.execute()

        await self._cache.run(operation)

    async def rotate(
        self, old_hash: bytes, new_hash: bytes, *, overlap_s: float, ttl_s: float
    ) -> Rotated:
        keys = [self._token(old_hash), self._token(new_hash)]
        args = [
            self._cache.key("sess", ""),
            round(overlap_s * 1e6),
            round(ttl_s * 1000),
            self.ends_channel,
        ]

        async def operation(client: Client) -> Any:
            if self._rotate is None:
                self._rotate = client.register_script(_ROTATE)
            return await self._rotate(keys=keys, args=args, client=client)

        reply = [_text(part) for part in await self._cache.run(operation)]
        outcome = reply[0]
        if outcome != "ok":
            return Rotated(outcome, reply[1] if len(reply) > 1 else None)
        account_id, email, name, phone = reply[2:6]
        return Rotated("ok", reply[1], SessionProfile(account_id, email, name, phone or None))

    async def alive(self, session_id: str) -> bool:
        """The session exists (not logged out, not revoked, not expired)."""
        session = self._session(session_id)

        async def operation(client: Client) -> int:
            return int(await client.exists(session))

        return await self._cache.run(operation) == 1

    async def revoke(self, session_id: str) -> None:
        session, channel = self._session(session_id), self.ends_channel

        async def operation(client: Client) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(session)
                pipe.publish(channel, session_id)
                await pipe.execute()

        await self._cache.run(operation)
