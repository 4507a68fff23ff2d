"""Accounts, sessions and rate limits: token lifetimes, password hashing cost, limits.

A rate limit is written ``COUNT/PERIOD`` with an optional burst: ``10/60s`` allows a
burst of 10 and then one request every 6 s; ``5/15m burst=2`` a burst of 2, then one
every 3 min. Periods take ``s``, ``m`` or ``h``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass, field

from config._check import check as _check

__all__ = [
    "DEVELOPMENT_SIGNING_KEYS",
    "AuthSettings",
    "RateLimit",
    "RateLimitSettings",
    "parse_rate",
    "parse_signing_keys",
]

# The longest life an access token may have: while Redis is down it is checked by
# signature and expiry only, so a revoked token lives at most this long.
MAX_ACCESS_TTL_S = 900

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*(?:burst\s*=\s*(\d+))?\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


# Published, so anyone can sign with it: outside production only (production refuses it).
DEVELOPMENT_SIGNING_KEYS = (
    "dev:" + base64.urlsafe_b64encode(b"lomash-development-only-signing!").decode()
)
_KID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def parse_signing_keys(raw: str) -> list[tuple[str, bytes]]:
    """``kid:seed,kid:seed`` -> [(kid, 32-byte Ed25519 seed)], the signing key first."""
    keys: list[tuple[str, bytes]] = []
    for part in raw.split(","):
        kid, _, encoded = part.strip().partition(":")
        if not _KID.match(kid):
            raise ValueError(f"key id {kid!r}: 1 to 64 of A-Z a-z 0-9 . _ -")
        try:
            seed = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise ValueError(f"key {kid!r}: not base64url") from None
        if len(seed) != 32:
            raise ValueError(f"key {kid!r}: an Ed25519 seed is 32 bytes, got {len(seed)}")
        if any(kid == seen for seen, _ in keys):
            raise ValueError(f"key id {kid!r} appears twice")
        keys.append((kid, seed))
    return keys


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``count`` requests per ``period_s``, at most ``burst`` of them at once."""

    count: int
    period_s: float
    burst: int

    @property
    def interval_s(self) -> float:
        """One request is allowed every this long once the burst is spent."""
        return self.period_s / self.count


def parse_rate(raw: str) -> RateLimit:
    """``10/60s`` -> RateLimit(10, 60.0, burst=10); ValueError saying what is wrong."""
    match = _RATE.match(raw)
    if match is None:
        raise ValueError(f"expected COUNT/PERIOD[s|m|h] [burst=N], got {raw!r}")
    count, period, unit, burst = match.groups()
    limit = RateLimit(int(count), float(period) * _UNIT_S[unit], int(burst or count))
    if limit.count < 1 or limit.period_s <= 0 or limit.burst < 1:
        raise ValueError(f"count, period and burst must be positive, got {raw!r}")
    return limit


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Per client IP (``*_ip``) and per account (``*_account``; for login, per e-mail
    address tried, so a brute force on one account is slowed whatever its source)."""

    enabled: bool = True
    # The load balancers' addresses (CIDRs): only a request from one of them has its
    # X-Forwarded-For believed; from anyone else the header is ignored.
    trusted_proxies: frozenset[str] = frozenset()
    login_ip: str = "20/60s"
    login_account: str = "5/300s"
    register_ip: str = "5/300s"
    refresh_ip: str = "30/60s"
    refresh_account: str = "10/60s"
    booking_ip: str = "30/60s"
    booking_account: str = "10/60s"
    order_ip: str = "30/60s"
    order_account: str = "10/60s"

    def __post_init__(self) -> None:
        for name in (
            "login_ip",
            "login_account",
            "register_ip",
            "refresh_ip",
            "refresh_account",
            "booking_ip",
            "booking_account",
            "order_ip",
            "order_account",
        ):
            try:
                parse_rate(getattr(self, name))
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        for network in self.trusted_proxies:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {network!r} is not an address or CIDR network"
                ) from None

    def limit(self, name: str) -> RateLimit:
        """The parsed limit of ``name`` (``login_ip``, ...)."""
        return parse_rate(str(getattr(self, name)))


@dataclass(frozen=True, slots=True)
class AuthSettings:
    # ``kid:key,kid:key``: Ed25519 private keys (32-byte seeds, base64url), the first
    # signs, the others only verify (the previous key during a rotation). Unset
    # outside production: a published development key (production refuses it).
    signing_keys: str | None = None
    issuer: str = "lomash-wood"
    audience: str = "lomash-wood-api"
    access_ttl_s: int = MAX_ACCESS_TTL_S
    # A refresh token (a session) unused for this long expires.
    refresh_ttl_s: int = 30 * 24 * 3600
    # A refresh token used again within this long of its rotation is a concurrent
    # refresh (two tabs), answered with another token; later, it is theft: the whole
    # session (its family of tokens) is revoked.
    refresh_reuse_overlap_s: float = 10.0
    # An access token's session seen alive is trusted this long without asking Redis
    # again, while the process follows the channel every session's end is published
    # on (a logout or a replayed refresh token is seen at once; this bounds what a
    # lost notice or an expiry could leave); 0: ask Redis on every request.
    session_memory_s: float = 5.0
    # Argon2id (OWASP's minimum: 19 MiB, 2 passes, 1 lane); hashes made with other
    # values are upgraded at the next login.
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19 * 1024
    argon2_parallelism: int = 1
    # Hashes computed at once (threads): the rest wait in the accounts actor's mailbox.
    hash_concurrency: int = 2
    password_min_length: int = 10
    # Characters; longer passwords are refused before any hashing (a bounded cost).
    password_max_length: int = 128
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)

    def __post_init__(self) -> None:
        _check(
            self.session_memory_s >= 0,
            "session_memory_s: must be >= 0",
        )
        _check(
            0 < self.access_ttl_s <= MAX_ACCESS_TTL_S,
            f"access_ttl_s: must be > 0 and at most {MAX_ACCESS_TTL_S} (15 min)",
        )
        _check(self.refresh_ttl_s > self.access_ttl_s, "refresh_ttl_s: must be > access_ttl_s")
        _check(self.refresh_reuse_overlap_s >= 0, "refresh_reuse_overlap_s: must be >= 0")
        _check(self.argon2_time_cost >= 1, "argon2_time_cost: must be >= 1")
        _check(self.argon2_memory_kib >= 8 * 1024, "argon2_memory_kib: must be >= 8192")
        _check(self.argon2_parallelism >= 1, "argon2_parallelism: must be >= 1")
        _check(self.hash_concurrency >= 1, "hash_concurrency: must be >= 1")
        _check(
            8 <= self.password_min_length <= self.password_max_length <= 1024,
            "password_min_length: must be >= 8 and <= password_max_length (<= 1024)",
        )
        if self.signing_keys is not None:
            try:
                parse_signing_keys(self.signing_keys)
            except ValueError as error:
                raise ValueError(f"signing_keys: {error}") from None

    def keys(self) -> list[tuple[str, bytes]]:
        """(kid, seed), the signing key first (the development key when none is set)."""
        return parse_signing_keys(self.signing_keys or DEVELOPMENT_SIGNING_KEYS)
