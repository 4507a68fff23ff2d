"""Customer accounts and their sessions: two actors.

``AccountActor`` (``Register``, ``Login``) owns the accounts table and the password
work: it needs Postgres (its breaker guards it) and computes argon2id hashes in
threads (``Passwords``), so its mailbox is what bounds that CPU. A login that finds
the password right opens a session in Redis and answers with an access token and a
refresh token.

``SessionKeeper`` (``Refresh``, ``Logout``) needs Redis only: while Postgres is
down, customers who are logged in keep refreshing (and so keep their sessions).

Redis down at login: the customer still gets in, with an access token of no session
(``sid`` empty) and no refresh token: it cannot be revoked or refreshed, so it lives
its 15 minutes and then the customer logs in again. (Every token is in that state
while Redis is down anyway: only signature and expiry can be checked.)

Refresh tokens are ``{account id}.{secret}``: opaque to the client, stored as a
SHA-256 hash, never readable back. The account id in front lets the gateway limit
refreshes per account before anything is looked up.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

import structlog

from actors._access_tokens import NO_SESSION, AccessTokens
from actors._passwords import Passwords, email_key
from adapters import (
    Account,
    AccountStore,
    NewAccount,
    SessionMemory,
    SessionProfile,
    Sessions,
)
from config import AuthSettings
from supervisors import Conflict, LomashError, Unauthorized, is_outage

__all__ = [
    "AccountActor",
    "Login",
    "Logout",
    "Refresh",
    "Register",
    "SessionKeeper",
    "Tokens",
    "refresh_account",
]

log = structlog.get_logger("actors.accounts")


@dataclass(frozen=True, slots=True)
class Register:
    email: str
    name: str
    phone: str | None
    password: str  # checked against the policy by the gateway


@dataclass(frozen=True, slots=True)
class Login:
    email: str
    password: str


@dataclass(frozen=True, slots=True)
class Refresh:
    refresh_token: str


@dataclass(frozen=True, slots=True)
class Logout:
    session_id: str


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    expires_in: int
    refresh_token: str | None  # None: issued while Redis was down (no session)

    def view(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
        }


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def refresh_account(token: str) -> str | None:
    """The account id a refresh token names (unverified: for rate limiting only)."""
    account, dot, _ = token.partition(".")
    try:
        return str(uuid.UUID(account)) if dot else None
    except ValueError:
        return None


def _wrong() -> Unauthorized:
    # One answer for an unknown address and a wrong password (and one time: see
    # Passwords.verify).
    return Unauthorized("the e-mail address or the password is wrong", code="invalid_credentials")


def _new_refresh_token(account_id: str) -> str:
    return f"{account_id}.{secrets.token_urlsafe(32)}"


class AccountActor:
    def __init__(
        self,
        store: AccountStore,
        sessions: Sessions,
        tokens: AccessTokens,
        passwords: Passwords,
        settings: AuthSettings,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._tokens = tokens
        self._passwords = passwords
        self._settings = settings

    async def handle(self, message: Register | Login) -> Account | Tokens:
        match message:
            case Register():
                return await self._register(message)
            case Login():
                return await self._login(message)

    async def _register(self, message: Register) -> Account:
        email = unicodedata.normalize("NFC", message.email.strip())
        new = NewAccount(
            id=str(uuid.uuid4()),
            email=email,
            email_key=email_key(email),
            name=message.name,
            phone=message.phone,
            password_hash=await self._passwords.hash(message.password),
        )
        created = await self._store.create(new)
        if created is None:
            raise Conflict("an account with this e-mail address exists", code="email_taken")
        log.info("account_registered", account_id=created.id)
        return created

    async def _login(self, message: Login) -> Tokens:
        found = await self._store.by_email_key(email_key(message.email))
        ok = await self._passwords.verify(
            None if found is None else found.password_hash, message.password
        )
        if found is None or not ok:
            raise _wrong()
        if self._passwords.needs_rehash(found.password_hash):
            await self._store.update_hash(found.id, await self._passwords.hash(message.password))
            log.info("password_rehashed", account_id=found.id)
        session_id = secrets.token_urlsafe(16)
        refresh_token = _new_refresh_token(found.id)
        profile = SessionProfile(found.id, found.email, found.name, found.phone)
        try:
            await self._sessions.create(
                session_id, _token_hash(refresh_token), profile, ttl_s=self._settings.refresh_ttl_s
            )
        except LomashError as error:
            if not is_outage(error):
                raise
            log.warning("login_without_session", account_id=found.id, error=error.message)
            return _tokens(self._tokens, NO_SESSION, profile, None)
        return _tokens(self._tokens, session_id, profile, refresh_token)


def _tokens(
    tokens: AccessTokens, session_id: str, profile: SessionProfile, refresh_token: str | None
) -> Tokens:
    access = tokens.issue(
        profile.account_id, session_id, profile.email, profile.name, profile.phone
    )
    return Tokens(access, tokens.ttl_s, refresh_token)


class SessionKeeper:
    def __init__(
        self,
        sessions: Sessions,
        tokens: AccessTokens,
        settings: AuthSettings,
        memory: SessionMemory | None = None,
    ) -> None:
        self._sessions = sessions
        self._tokens = tokens
        self._settings = settings
        self._memory = memory

    async def handle(self, message: Refresh | Logout) -> Tokens | None:
        match message:
            case Refresh():
                return await self._refresh(message.refresh_token)
            case Logout():
                if message.session_id == NO_SESSION:
                    return None  # nothing to end: the token expires by itself
                await self._sessions.revoke(message.session_id)  # published to all
                if self._memory is not None:
                    self._memory.forget(message.session_id)  # here at once
                log.info("session_ended", session_id=message.session_id)
                return None

    async def _refresh(self, token: str) -> Tokens:
        account_id = refresh_account(token)
        if account_id is None:
            raise Unauthorized("the refresh token is invalid", code="invalid_token")
        new_token = _new_refresh_token(account_id)
        rotated = await self._sessions.rotate(
            _token_hash(token),
            _token_hash(new_token),
            overlap_s=self._settings.refresh_reuse_overlap_s,
            ttl_s=self._settings.refresh_ttl_s,
        )
        if rotated.outcome == "reused":
            log.warning("refresh_token_reused", session_id=rotated.session_id)
        if rotated.outcome != "ok" or rotated.profile is None or rotated.session_id is None:
            raise Unauthorized(
                "the refresh token is invalid, expired or revoked: log in again",
                code="invalid_token",
            )
        return _tokens(self._tokens, rotated.session_id, rotated.profile, new_token)
