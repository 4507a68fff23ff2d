"""Schema migrations: plain SQL files, applied in order, under an advisory lock.

The files, and the additive-only policy their up files must pass, are
``adapters._migration_files`` (re-exported here); this module applies, reverts and
reports them against Postgres.

Files
    A directory (default: the repository's ``migrations/``) holds pairs
    ``NNNN_name.up.sql`` / ``NNNN_name.down.sql``, versions contiguous from 0001. An up
    file runs in one transaction together with its row in ``schema_migrations``
    (version, name, SHA-256 of the up file, applied_at); its down file undoes it, also
    in one transaction, and deletes the row. So statements that cannot run inside a
    transaction (``CREATE INDEX CONCURRENTLY``) and ``BEGIN`` / ``COMMIT`` have no place
    in a migration. Every command refuses with ``MigrationError`` when a file is
    misnamed or not UTF-8, or a version is duplicated, missing or lacks its down file.
    ``migrate_up`` and ``migrate_down`` also refuse when an applied up file was edited
    (or renamed) since, which ``migration_status`` reports: write a new migration
    instead. A database ahead of the code (versions applied by a newer release, as
    after a blue/green rollback) is allowed: up applies nothing and logs it.
    ``migrate_up`` also refuses to run while ``check_policy`` reports anything.

The lock
    Every command holds a session-level ``pg_advisory_lock(MIGRATION_LOCK_KEY)`` (64
    bits of the BLAKE2b hash of a fixed name) on a connection of its own for its whole
    run, so runners that start together go one after the other: the second waits,
    then finds nothing pending. The lock is released and the connection closed in
    ``finally`` under a bounded shield; closing the connection alone would also
    release the lock, so a failed release is logged and the connection terminated.
    The connection runs with ``statement_timeout`` off (index builds, backfills and
    the wait for the lock may be long): the caller's deadline bounds a run.

Each step (connect, lock, read the history, one migration, release) is one asyncio
coroutine run in a single ``trio_asyncio.aio_as_trio`` hop; vendor errors are
translated there by ``adapters._postgres.translate`` (``DatabaseError`` and its
siblings). Requires ``trio_asyncio.open_loop()`` as the outermost context.

``MigrationError`` (the files or the recorded history forbid the run) is defined with
the files, in ``adapters._migration_files``.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import asyncpg
import structlog
import trio
import trio_asyncio

from adapters._migration_files import (
    MIGRATIONS_DIR,
    Migration,
    MigrationError,
    PolicyViolation,
    _violations,
    check_policy,
    load_migrations,
)
from adapters._postgres import TRANSLATED_ERRORS, translate
from config import Settings
from supervisors import LomashError

__all__ = [
    "MIGRATIONS_DIR",
    "MIGRATION_LOCK_KEY",
    "Migration",
    "MigrationError",
    "MigrationStatus",
    "PolicyViolation",
    "check_policy",
    "load_migrations",
    "migrate_down",
    "migrate_up",
    "migration_status",
]

MIGRATION_LOCK_KEY = int.from_bytes(
    hashlib.blake2b(b"lomash.schema_migrations", digest_size=8).digest(), "big", signed=True
)

type _Connection = asyncpg.Connection[asyncpg.Record]

log = structlog.get_logger("adapters.migrations")

_DEFAULTS = Settings()
_TARGET = "postgres"
# statement_timeout 0 means off; see "The lock" above. A 57014 on this connection is
# then a cancel by an operator, reported as a timeout of 0 s (none was set).
_SERVER_SETTINGS = {"application_name": "lomash-migrations", "statement_timeout": "0"}
_STATEMENT_TIMEOUT_OFF_S = 0.0
_VENDOR_ERRORS = TRANSLATED_ERRORS

_CREATE_HISTORY = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""
_READ_HISTORY = "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
_RECORD = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
_FORGET = "DELETE FROM schema_migrations WHERE version = $1"


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """Where one version stands in a database.

    ``checksum_matches`` is False when the recorded checksum differs from the up
    file's, or when the version is applied but has no file here (newer code applied
    it); a pending version has nothing to contradict and reports True.
    """

    version: int
    name: str
    applied: bool
    applied_at: datetime | None
    checksum_matches: bool


@dataclass(frozen=True, slots=True)
class _Applied:
    """One row of ``schema_migrations``."""

    version: int
    name: str
    checksum: str
    applied_at: datetime


async def migrate_up(
    url: str,
    directory: Path = MIGRATIONS_DIR,
    *,
    target: int | None = None,
    cleanup_s: float = _DEFAULTS.cleanup_timeout_s,
    connect_timeout_s: float = _DEFAULTS.database.connect_timeout_s,
) -> list[Migration]:
    """Apply the pending migrations (up to ``target``) in order; return those applied.

    Refuses (``MigrationError``, before touching the database) while ``check_policy``
    reports violations.
    """
    migrations = await trio.to_thread.run_sync(load_migrations, directory)
    violations = _violations(migrations)
    if violations:
        first = violations[0]
        raise MigrationError(
            f"{len(violations)} additive-only policy violation(s); first: {first.file}: "
            f"{first.reason}: {first.statement}",
            version=first.version,
            violations=violations,
        )
    if target is not None and not any(m.version == target for m in migrations):
        raise MigrationError(f"no migration {target:04d} in {directory}", version=target)
    applied: list[Migration] = []
    async with _open_locked_connection(url, cleanup_s, connect_timeout_s) as connection:
        history = await _hop(_read_history, connection, True)
        _check_history(migrations, history)
        ahead = [row.version for row in history.values() if row.version > len(migrations)]
        if ahead:
            log.warning("migrations_ahead_of_code", versions=ahead)
        for migration in migrations:
            if migration.version in history:
                continue
            if target is not None and migration.version > target:
                break
            await _step(_apply, connection, migration, "up")
            log.info("migration_applied", version=migration.version, name=migration.name)
            applied.append(migration)
    return applied


async def migrate_down(
    url: str,
    directory: Path = MIGRATIONS_DIR,
    *,
    steps: int = 1,
    cleanup_s: float = _DEFAULTS.cleanup_timeout_s,
    connect_timeout_s: float = _DEFAULTS.database.connect_timeout_s,
) -> list[Migration]:
    """Roll back the latest ``steps`` applied migrations, newest first; return them."""
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps!r}")
    migrations = await trio.to_thread.run_sync(load_migrations, directory)
    known = {m.version: m for m in migrations}
    rolled_back: list[Migration] = []
    async with _open_locked_connection(url, cleanup_s, connect_timeout_s) as connection:
        history = await _hop(_read_history, connection, False)
        _check_history(migrations, history)
        latest = sorted(history, reverse=True)[:steps]
        if len(latest) < steps:
            raise MigrationError(
                f"asked to roll back {steps} migration(s), {len(history)} applied", version=None
            )
        for version in latest:
            if version not in known:
                raise MigrationError(
                    f"{version:04d}_{history[version].name} was applied by newer code; "
                    f"its down file is not in {directory}",
                    version=version,
                )
        for version in latest:
            migration = known[version]
            await _step(_revert, connection, migration, "down")
            log.info("migration_rolled_back", version=migration.version, name=migration.name)
            rolled_back.append(migration)
    return rolled_back


async def migration_status(
    url: str,
    directory: Path = MIGRATIONS_DIR,
    *,
    cleanup_s: float = _DEFAULTS.cleanup_timeout_s,
    connect_timeout_s: float = _DEFAULTS.database.connect_timeout_s,
) -> list[MigrationStatus]:
    """Every version known here or recorded in the database, applied or not, by version."""
    migrations = await trio.to_thread.run_sync(load_migrations, directory)
    async with _open_locked_connection(url, cleanup_s, connect_timeout_s) as connection:
        history = await _hop(_read_history, connection, False)
    statuses = [
        MigrationStatus(
            version=m.version,
            name=m.name,
            applied=m.version in history,
            applied_at=history[m.version].applied_at if m.version in history else None,
            checksum_matches=m.version not in history or history[m.version].checksum == m.checksum,
        )
        for m in migrations
    ]
    statuses += [
        MigrationStatus(
            version=row.version,
            name=row.name,
            applied=True,
            applied_at=row.applied_at,
            checksum_matches=False,
        )
        for row in history.values()
        if row.version > len(migrations)
    ]
    return statuses


def _check_history(migrations: Sequence[Migration], history: Mapping[int, _Applied]) -> None:
    """Refuse a history the files contradict: edited, renamed, unknown or out of order."""
    known = {m.version: m for m in migrations}
    for row in history.values():
        migration = known.get(row.version)
        if migration is None:
            if row.version > len(migrations):
                continue  # applied by newer code: the schema is ahead, which is allowed
            raise MigrationError(
                f"{row.version:04d}_{row.name} is recorded as applied but has no files",
                version=row.version,
            )
        if row.name != migration.name:
            raise MigrationError(
                f"{migration.label} was applied as {row.version:04d}_{row.name}: "
                "an applied migration must not be renamed",
                version=row.version,
            )
        if row.checksum != migration.checksum:
            raise MigrationError(
                f"{migration.label}.up.sql changed after it was applied (checksum "
                f"{row.checksum[:12]} recorded, {migration.checksum[:12]} now): "
                "add a new migration instead",
                version=row.version,
            )
    pending = [m.version for m in migrations if m.version not in history]
    if pending and any(version > pending[0] for version in history):
        raise MigrationError(
            f"{pending[0]:04d} is not applied but later versions are", version=pending[0]
        )


# --- The database side: one bridge hop per step -------------------------------------


async def _hop[*Args, T](step: Callable[[*Args], Awaitable[T]], *args: *Args) -> T:
    """Run ``step`` on the asyncio side of the bridge, in one hop."""
    result: T = await trio_asyncio.aio_as_trio(_translated)(step, *args)
    return result


async def _translated[*Args, T](step: Callable[[*Args], Awaitable[T]], *args: *Args) -> T:
    """Runs on the asyncio side: the step, with vendor errors translated."""
    try:
        return await step(*args)
    except _VENDOR_ERRORS as error:
        raise translate(
            error, target=_TARGET, statement_timeout_s=_STATEMENT_TIMEOUT_OFF_S
        ) from error


async def _step(
    step: Callable[[_Connection, Migration], Awaitable[None]],
    connection: _Connection,
    migration: Migration,
    direction: Literal["up", "down"],
) -> None:
    """One migration's hop; a failure is logged and names the migration."""
    try:
        await _hop(step, connection, migration)
    except LomashError as error:
        log.error(
            "migration_failed",
            version=migration.version,
            name=migration.name,
            direction=direction,
            error=error.message,
        )
        error.add_note(f"while running {migration.label}.{direction}.sql")
        raise


@asynccontextmanager
async def _open_locked_connection(
    url: str, cleanup_s: float, connect_timeout_s: float
) -> AsyncIterator[_Connection]:
    """A connection of its own holding the migration lock; released and closed on exit."""
    connection = await _hop(_connect, url, connect_timeout_s)
    locked = False
    try:
        await _hop(_lock, connection)
        locked = True
        yield connection
    finally:
        with trio.move_on_after(cleanup_s, shield=True) as cleanup:
            try:
                await _hop(_release, connection, locked)
            except LomashError as error:
                # Terminating the connection ends the session, and the lock with it.
                log.warning("migration_lock_release_failed", error=error.message)
                connection.terminate()
        if cleanup.cancelled_caught:
            connection.terminate()
            log.warning("migration_connection_terminated", cleanup_s=cleanup_s)


async def _connect(url: str, connect_timeout_s: float) -> _Connection:
    return await asyncpg.connect(
        url,
        timeout=connect_timeout_s,
        server_settings=_SERVER_SETTINGS,
    )


async def _lock(connection: _Connection) -> None:
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)


async def _release(connection: _Connection, locked: bool) -> None:
    try:
        if locked:
            await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await connection.close()


async def _read_history(connection: _Connection, create: bool) -> dict[int, _Applied]:
    """The applied migrations; creates ``schema_migrations`` if ``create`` (else reads none)."""
    if create:
        await connection.execute(_CREATE_HISTORY)
    elif await connection.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return {}
    rows = await connection.fetch(_READ_HISTORY)
    return {
        row["version"]: _Applied(row["version"], row["name"], row["checksum"], row["applied_at"])
        for row in rows
    }


async def _apply(connection: _Connection, migration: Migration) -> None:
    async with connection.transaction():
        await connection.execute(migration.up_sql)
        await connection.execute(_RECORD, migration.version, migration.name, migration.checksum)


async def _revert(connection: _Connection, migration: Migration) -> None:
    async with connection.transaction():
        await connection.execute(migration.down_sql)
        await connection.execute(_FORGET, migration.version)
