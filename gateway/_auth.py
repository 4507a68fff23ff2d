"""Who is calling, and may they: access tokens, session checks, client addresses, rate
limits. One ``AccountGuard`` per process, shared by the Quart routes and the fast
booking route.

Session check: an access token is refused once its session is gone (logout, theft
detected, expired) while Redis answers. A session seen alive is remembered
(``SessionMemory``, ``LOMASH_AUTH_SESSION_MEMORY_S``) while the process follows the
channel session ends are published on: its next checks need no round trip, and an end
anywhere is heard at once. While Redis is down (its gate refuses) only
the signature and expiry are checked, so a revoked token lives at most until it
expires (``access_ttl_s``, at most 15 min); each such request is counted in
``unchecked``, and the outage logged once.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog

from actors import NO_SESSION, AccessTokens, Identity, looks_like_jwt
from adapters import Cache, Decision, RateLimiter, SessionMemory, Sessions
from config import AuthSettings, RateLimit
from supervisors import LomashError, TooManyRequests, Unauthorized

__all__ = ["AccountGuard", "Credentials", "client_address"]

log = structlog.get_logger("gateway.auth")

type Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(peer: str | None, forwarded_for: str | None, trusted: Iterable[Network]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the
    right-most address in ``X-Forwarded-For`` that is not a trusted proxy (entries to
    its left were written by the client and prove nothing)."""
    address = peer or "unknown"
    networks = list(trusted)
    if not networks or forwarded_for is None or not _within(address, networks):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return address  # a malformed chain: believe only the peer
        if not _within(hop, networks):
            return hop
        address = hop
    return address


def _within(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a caller presented for a booking or order: its manage token, its account
    (from a valid access token), or both."""

    token: str | None = None
    identity: Identity | None = None

    @property
    def account_id(self) -> str | None:
        return None if self.identity is None else self.identity.account_id


@dataclass
class _Counters:
    unchecked: int = 0  # access tokens accepted without a session check (Redis down)
    outage: bool = field(default=False)


# The limits of each rate-limited action: (per IP, per account).
_ACTIONS = {
    "login": ("login_ip", "login_account"),
    "register": ("register_ip", None),
    "refresh": ("refresh_ip", "refresh_account"),
    "booking": ("booking_ip", "booking_account"),
    "order": ("order_ip", "order_account"),
}


class AccountGuard:
    def __init__(
        self,
        settings: AuthSettings,
        cache: Cache,
        *,
        tokens: AccessTokens | None = None,
        limiter: RateLimiter | None = None,
        memory: SessionMemory | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens or AccessTokens(settings)
        self.sessions = Sessions(cache)
        # Never following unless the session-ends task keeps it: then every check asks.
        self.memory = memory or SessionMemory(settings.session_memory_s)
        self.limiter = limiter or RateLimiter(cache)
        self._counters = _Counters()
        limits = settings.rate_limits
        self._trusted: list[Network] = [
            ipaddress.ip_network(n, strict=False) for n in limits.trusted_proxies
        ]
        self._limits: dict[str, tuple[RateLimit, RateLimit | None]] = {
            action: (limits.limit(ip), None if account is None else limits.limit(account))
            for action, (ip, account) in _ACTIONS.items()
        }

    @property
    def unchecked(self) -> int:
        return self._counters.unchecked

    def client(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address, given the peer's and its ``X-Forwarded-For``."""
        return client_address(peer, forwarded_for, self._trusted)

    # -- identity -----------------------------------------------------------------

    async def identity(self, authorization: str | None) -> Identity | None:
        """The account an ``Authorization: Bearer <access token>`` speaks for; None
        without a bearer JWT; 401 for a token that is invalid, expired or revoked."""
        token = bearer(authorization)
        if token is None or not looks_like_jwt(token):
            return None
        return await self.verify(token)

    async def verify(self, token: str) -> Identity:
        identity = self.tokens.verify(token)
        if identity.session_id == NO_SESSION:
            return identity  # issued while Redis was down: signature and expiry only
        if self.memory.alive(identity.session_id):
            return identity
        try:
            alive = await self.sessions.alive(identity.session_id)
        except LomashError as error:
            self._counters.unchecked += 1
            if not self._counters.outage:
                self._counters.outage = True
                log.warning("session_checks_skipped", error=error.message)
            return identity
        if self._counters.outage:
            self._counters.outage = False
            log.info("session_checks_restored", unchecked=self._counters.unchecked)
        if not alive:
            raise Unauthorized("this session has ended: log in again", code="session_revoked")
        self.memory.keep(identity.session_id)
        return identity

    async def required(self, authorization: str | None) -> Identity:
        """``identity``, or 401 when there is none."""
        identity = await self.identity(authorization)
        if identity is None:
            raise Unauthorized("this needs an access token (Authorization: Bearer ...)")
        return identity

    async def credentials(
        self, manage_token: str | None, authorization: str | None, what: str
    ) -> Credentials:
        """A booking's or order's caller: ``X-Manage-Token``, or ``Authorization:
        Bearer`` with an access token (the account) or a manage token. 401 without."""
        bearer_value = bearer(authorization)
        identity = None
        if bearer_value is not None and looks_like_jwt(bearer_value):
            identity = await self.verify(bearer_value)
        elif manage_token is None:
            manage_token = bearer_value
        if not manage_token and identity is None:
            raise Unauthorized(
                f"this needs the {what}'s manage token (X-Manage-Token) or an access token"
            )
        return Credentials(manage_token or None, identity)

    # -- rate limits --------------------------------------------------------------

    async def limit(self, action: str, client: str, account: str | None = None) -> dict[str, str]:
        """Take one request of ``action`` from the client's and the account's limits:
        their ``RateLimit-*`` headers, or 429 ``rate_limited`` with ``Retry-After``."""
        if not self.settings.rate_limits.enabled:
            return {}
        ip_limit, account_limit = self._limits[action]
        ip_name, account_name = _ACTIONS[action]
        limits = [(ip_name, client, ip_limit)]
        if account is not None and account_limit is not None and account_name is not None:
            subject = hashlib.sha256(account.encode()).hexdigest()[:32]
            limits.append((account_name, subject, account_limit))
        decision = await self.limiter.check(limits)
        if not decision.allowed:
            raise _refused(decision)
        return decision.headers()


def _refused(decision: Decision) -> TooManyRequests:
    per = "account" if decision.name.endswith("_account") else "address"
    return TooManyRequests(
        f"too many requests from this {per}: retry after the Retry-After seconds",
        retry_after=decision.retry_after_s,
        headers=decision.headers(),
    )


def bearer(authorization: str | None) -> str | None:
    """The credential of ``Authorization: Bearer <value>`` (None if absent or not Bearer)."""
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
