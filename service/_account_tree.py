"""The accounts part of the tree: the ``accounts`` actor (password work and the
accounts table: Postgres, so the database breaker guards it; its mailbox bounds the
argon2 threads' queue) and the ``sessions`` actor (Redis only, no breaker: refreshes
go on while Postgres is down). One ``AccessTokens`` signs for both and verifies for
the gateway. A ``SessionMemory`` lets the gateway skip the session check's Redis round
trip for sessions seen alive lately, kept by the ``session-ends`` task (subscribed to
every session's end)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

from actors import AccessTokens, AccountActor, Passwords, SessionKeeper
from adapters import Cache, Database, PostgresAccountStore, SessionMemory, Sessions
from config import BreakerSettings, Settings
from supervisors import ActorSpec, ChildSpec, Forever, Holder, TaskSpec

__all__ = ["AccountActors", "account_actors"]


@dataclass(frozen=True, slots=True)
class AccountActors:
    accounts: ActorSpec[Any, Any]
    sessions: ActorSpec[Any, Any]
    tokens: AccessTokens
    memory: SessionMemory
    ends: TaskSpec

    @property
    def specs(self) -> list[ChildSpec]:
        return [self.accounts, self.sessions, self.ends]


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
    memory = SessionMemory(auth.session_memory_s)
    sessions: ActorSpec[Any, Any] = ActorSpec(
        "sessions",
        lambda: SessionKeeper(Sessions(cache.value), tokens, auth, memory),
        mailbox=settings.runtime.mailbox,
        shutdown_s=settings.runtime.child_shutdown_s,
    )
    ends = TaskSpec(
        "session-ends",
        # While it is not running, the memory trusts nothing: every check asks Redis.
        lambda: Forever(partial(Sessions(cache.value).follow_ends, memory)),
        shutdown_s=settings.runtime.child_shutdown_s,
    )
    return AccountActors(accounts, sessions, tokens, memory, ends)
