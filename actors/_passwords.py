"""Passwords: argon2id hashes computed off the event loop, the password policy, and
the e-mail key that makes an address unique.

Hashing is CPU and memory by design (19 MiB, ~35 ms here); it runs in worker threads
(argon2-cffi releases the GIL), at most ``hash_concurrency`` at once. A login for an
address nobody has verifies against a dummy hash made with the same parameters, so
it costs the same time as a wrong password.
"""

from __future__ import annotations

import unicodedata

import trio
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from config import AuthSettings
from supervisors import InvalidRequest

__all__ = ["Passwords", "check_bounded", "check_password", "email_key"]

# A few of the most used passwords long enough to pass the length rule.
_COMMON = frozenset(
    {
        "1234567890",
        "12345678910",
        "123456789012",
        "0123456789",
        "qwertyuiop",
        "password123",
        "password1234",
        "passwordpassword",
        "iloveyou123",
        "qwerty12345",
        "1q2w3e4r5t",
        "abcdefghij",
        "abc1234567",
        "lomashwood",
        "lomashwood1",
    }
)


def email_key(email: str) -> str:
    """What makes an address unique: NFC, trimmed, case-folded, the domain in IDNA
    ASCII (``Zoë@Bücher.Example`` and ``zoë@xn--bcher-kva.example`` are one account).
    422 if the domain cannot be encoded."""
    local, _, domain = unicodedata.normalize("NFC", email.strip()).rpartition("@")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidRequest(
            "email: the domain is not a valid host name", code="invalid_field", field="email"
        ) from None
    return f"{local.casefold()}@{ascii_domain}"


def check_bounded(password: str, settings: AuthSettings) -> None:
    """422 ``password_too_long`` past the policy's maximum: no such password is ever
    hashed (at register) or verified (at login)."""
    if len(password) > settings.password_max_length:
        raise InvalidRequest(
            f"password: at most {settings.password_max_length} characters",
            code="password_too_long",
            field="password",
        )


def check_password(password: str, email: str, settings: AuthSettings) -> None:
    """The policy, or the 422 that says which rule the password breaks."""
    if len(password) < settings.password_min_length:
        raise InvalidRequest(
            f"password: at least {settings.password_min_length} characters",
            code="password_too_short",
            field="password",
        )
    check_bounded(password, settings)
    folded = password.casefold()
    local = email.strip().rpartition("@")[0].casefold()
    if folded == email.strip().casefold() or (len(local) >= 4 and local in folded):
        raise InvalidRequest(
            "password: must not be or contain your e-mail address",
            code="password_is_email",
            field="password",
        )
    if folded in _COMMON or len(set(folded)) < 3:
        raise InvalidRequest(
            "password: too easy to guess, choose another",
            code="password_too_common",
            field="password",
        )


class Passwords:
    def __init__(self, settings: AuthSettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self._limiter = trio.CapacityLimiter(settings.hash_concurrency)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await trio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; ``password_hash`` None (no such account): the
        same work against a dummy hash, and False."""
        if password_hash is None:
            if self._dummy is None:  # hashing costs what verifying does: one argon2 run
                self._dummy = await self.hash(password)
            else:
                await self._check(self._dummy, password)  # the outcome does not matter
            return False
        return await self._check(password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    async def _check(self, password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await trio.to_thread.run_sync(verify, limiter=self._limiter)
