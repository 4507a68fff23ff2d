"""Customer accounts on Postgres: create one (unique by e-mail key), find one to log
in, upgrade a password hash made with older parameters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from adapters._postgres import Connection, Database

__all__ = ["Account", "AccountStore", "NewAccount", "PostgresAccountStore"]


@dataclass(frozen=True, slots=True)
class NewAccount:
    id: str
    email: str  # as given (trimmed, NFC)
    email_key: str  # what makes it unique (actors/_passwords.py: email_key)
    name: str
    phone: str | None
    password_hash: str


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    email: str
    name: str
    phone: str | None
    password_hash: str
    created_at: datetime


class AccountStore(Protocol):
    async def create(self, account: NewAccount) -> Account | None:
        """The account as stored; None if its e-mail key is taken (nothing written)."""
        ...

    async def by_email_key(self, email_key: str) -> Account | None: ...

    async def update_hash(self, account_id: str, password_hash: str) -> None: ...


_COLUMNS = "id::text, email, name, phone, password_hash, created_at"


def _account(row: Any) -> Account:
    return Account(*row)


class PostgresAccountStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def create(self, account: NewAccount) -> Account | None:
        async def operation(connection: Connection) -> Account | None:
            row = await connection.fetchrow(
                f"""INSERT INTO accounts (id, email, email_key, name, phone, password_hash)
                    VALUES ($1, $2, $3, $4, $5, $6)
                    ON CONFLICT (email_key) DO NOTHING RETURNING {_COLUMNS}""",
                uuid.UUID(account.id),
                account.email,
                account.email_key,
                account.name,
                account.phone,
                account.password_hash,
            )
            return None if row is None else _account(row)

        return await self._database.run(operation)

    async def by_email_key(self, email_key: str) -> Account | None:
        async def operation(connection: Connection) -> Account | None:
            row = await connection.fetchrow(
                f"SELECT {_COLUMNS} FROM accounts WHERE email_key = $1", email_key
            )
            return None if row is None else _account(row)

        # Not from the replica: an account registered a moment ago logs in at once.
        return await self._database.run(operation, idempotent=True)

    async def update_hash(self, account_id: str, password_hash: str) -> None:
        async def operation(connection: Connection) -> None:
            await connection.execute(
                "UPDATE accounts SET password_hash = $2, updated_at = now() WHERE id = $1",
                uuid.UUID(account_id),
                password_hash,
            )

        await self._database.run(operation)
