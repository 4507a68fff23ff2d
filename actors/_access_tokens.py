"""Access tokens: JWTs signed with Ed25519 (``EdDSA``), at most 15 minutes long.

The verifier accepts exactly one algorithm and only the key its ``kid`` names:
``alg: none``, an HMAC token keyed with our public key (the HS/RS confusion), an
unknown or missing ``kid``, a changed byte, an expired or not-yet-valid token, another
issuer or audience are all the same 401 ``invalid_token``. Keys rotate through
``LOMASH_AUTH_SIGNING_KEYS`` (the first signs, the rest still verify): a token signed
with the previous key verifies until it expires, one whose key was removed does not.

Claims: ``sub`` (account id), ``sid`` (the session), ``email``, ``name``, ``phone``,
``iat``/``nbf``/``exp``, ``iss``, ``aud``, ``jti``: enough to answer ``GET /v1/me``
with neither Postgres nor Redis.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from config import AuthSettings
from supervisors import Unauthorized

__all__ = ["ALGORITHM", "NO_SESSION", "AccessTokens", "Identity", "looks_like_jwt"]

ALGORITHM = "EdDSA"
# The ``sid`` of a token issued while Redis was down: no session backs it.
NO_SESSION = ""
# A real token is ~600 bytes; anything much longer is not parsed at all.
MAX_TOKEN_BYTES = 4096
# Tokens verified lately, kept with their identity until they expire so a client's
# next requests skip the signature check (~0.1 ms each). Only tokens that verified
# are kept (a flood of forged ones costs a check each, no memory), at most this many,
# the oldest dropped first.
VERIFIED_CAPACITY = 10_000
_REQUIRED = ["exp", "iat", "nbf", "sub", "sid", "iss", "aud"]


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller an access token speaks for."""

    account_id: str
    session_id: str
    email: str
    name: str
    phone: str | None
    expires_at: float


def invalid(why: str = "the access token is invalid or has expired") -> Unauthorized:
    return Unauthorized(why, code="invalid_token")


class AccessTokens:
    def __init__(self, settings: AuthSettings, *, clock: Callable[[], float] = time.time) -> None:
        keys = settings.keys()
        self._kid, seed = keys[0]
        self._signing = Ed25519PrivateKey.from_private_bytes(seed)
        self._public: dict[str, Ed25519PublicKey] = {
            kid: Ed25519PrivateKey.from_private_bytes(s).public_key() for kid, s in keys
        }
        self._settings = settings
        self._clock = clock
        self._verified: dict[str, Identity] = {}

    @property
    def remembered(self) -> int:
        """How many verified tokens are kept."""
        return len(self._verified)

    @property
    def ttl_s(self) -> int:
        return self._settings.access_ttl_s

    def issue(
        self, account_id: str, session_id: str, email: str, name: str, phone: str | None
    ) -> str:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self._settings.issuer,
            "aud": self._settings.audience,
            "sub": account_id,
            "sid": session_id,
            "email": email,
            "name": name,
            "phone": phone,
            "iat": now,
            "nbf": now,
            "exp": now + self._settings.access_ttl_s,
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(claims, self._signing, algorithm=ALGORITHM, headers={"kid": self._kid})

    def verify(self, token: str) -> Identity:
        """The token's identity, or 401 ``invalid_token`` (never another error)."""
        verified = self._verified
        known = verified.get(token)
        if known is not None:
            if time.time() < known.expires_at:  # the check PyJWT makes (no leeway)
                return known
            del verified[token]
        identity = self._verify(token)
        verified[token] = identity
        if len(verified) > VERIFIED_CAPACITY:
            del verified[next(iter(verified))]
        return identity

    def _verify(self, token: str) -> Identity:
        if len(token) > MAX_TOKEN_BYTES:
            raise invalid()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise invalid() from None
        kid = header.get("kid")
        key = self._public.get(kid) if isinstance(kid, str) else None
        if header.get("alg") != ALGORITHM or key is None:
            raise invalid()
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                options={"require": _REQUIRED},
            )
        except jwt.PyJWTError:
            raise invalid() from None
        # A token may not claim a longer life than this service ever gives.
        if claims["exp"] - claims["iat"] > self._settings.access_ttl_s:
            raise invalid()
        try:
            return Identity(
                account_id=str(claims["sub"]),
                session_id=str(claims["sid"]),
                email=str(claims["email"]),
                name=str(claims["name"]),
                phone=None if claims.get("phone") is None else str(claims["phone"]),
                expires_at=float(claims["exp"]),
            )
        except (KeyError, TypeError, ValueError):
            raise invalid() from None


def looks_like_jwt(token: str) -> bool:
    """A bearer value that is a JWT (three dot-separated parts), not a manage token
    (base64url: no dots)."""
    return token.count(".") == 2
