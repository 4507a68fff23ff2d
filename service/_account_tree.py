"""The accounts part of the tree: the ``accounts`` actor (password work and the
accounts table: Postgres, so the database breaker guards it; its mailbox bounds the
argon2 threads' queue) and the ``sessions`` actor (Redis only, no breaker: refreshes
go on while Postgres is down). One ``AccessTokens`` signs for both and verifies for
the gateway."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from actors import AccessTokens, AccountActor, Passwords, SessionKeeper
from adapters import Cache, Database, PostgresAccountStore, Sessions
from config import BreakerSettings, Settings
from supervisors import ActorSpec, Holder

__all__ = ["AccountActors", "account_actors"]


@dataclass(frozen=True, slots=True)
class AccountActors:
    accounts: ActorSpec[Any, Any]
    sessions: ActorSpec[Any, Any]
    tokens: AccessTokens

    @property
    def specs(self) -> list[ActorSpec[Any, Any]]:
        return [self.accounts, self.sessions]


def account_actors(
    settings: Settings,
    database: Holder[Database],
    cache: Holder[Cache],
    breaker: BreakerSettings,
) -> AccountActors:
    auth = settings.auth
    tokens = AccessTokens(auth)
    passwords = Passwords(auth)
    accounts: ActorSpec[Any, Any] = ActorSpec(
        "accounts",
        lambda: AccountActor(
            PostgresAccountStore(database.value), Sessions(cache.value), tokens, passwords, auth
        ),
        mailbox=dataclasses.replace(
            settings.runtime.mailbox, concurrency=2 * auth.hash_concurrency
        ),
        breaker=breaker,
        shutdown_s=settings.runtime.child_shutdown_s,
    )
    sessions: ActorSpec[Any, Any] = ActorSpec(
        "sessions",
        lambda: SessionKeeper(Sessions(cache.value), tokens, auth),
        mailbox=settings.runtime.mailbox,
        shutdown_s=settings.runtime.child_shutdown_s,
    )
    return AccountActors(accounts, sessions, tokens)
