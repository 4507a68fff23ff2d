"""Migrations against real Postgres: apply / roll back / status, the lock, and refusals."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
import trio
import trio_asyncio

from adapters._migrations import (
    MIGRATION_LOCK_KEY,
    Migration,
    MigrationError,
    MigrationStatus,
    load_migrations,
    migrate_down,
    migrate_up,
    migration_status,
)
from supervisors import DatabaseError
from tests.conftest import fetch
from tests.test_migration_policy import CREATE_W, CREATE_X, write

# The repository's own migrations, whatever later issues add.
REPO = load_migrations()

# Generous: a run is a handful of round trips to a local server.
TIMEOUT_S = 30

SHOWROOM_COLUMNS = {
    "id": ("text", "NO", None),
    "name": ("text", "NO", None),
    "address": ("text", "NO", None),
    "city": ("text", "NO", None),
    "postcode": ("text", "NO", None),
    "timezone": ("text", "NO", "'Europe/London'::text"),
    "opening_hours": ("jsonb", "NO", "'{}'::jsonb"),
    "created_at": ("timestamp with time zone", "NO", "now()"),
    # 0003_booking adds contact details (additive, with defaults).
    "phone": ("text", "NO", "''::text"),
    "email": ("text", "NO", "''::text"),
}

# Advisory locks in the test's database, granted ($1 = true) or waited for.
ADVISORY_LOCKS = (
    "SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
    " WHERE l.locktype = 'advisory' AND l.granted = $1 AND d.datname = current_database()"
)

ADD_Z = ("0002_add_z", "ALTER TABLE x ADD COLUMN z INT;", "ALTER TABLE x DROP COLUMN z;")


async def exists(url: str, table: str) -> bool:
    rows = await fetch(url, "SELECT to_regclass($1) IS NOT NULL AS found", table)
    return bool(rows[0]["found"])


async def history(url: str) -> list[tuple[int, str]]:
    rows = await fetch(url, "SELECT version, name FROM schema_migrations ORDER BY version")
    return [(row["version"], row["name"]) for row in rows]


def versions(migrations: list[Migration]) -> list[int]:
    return [m.version for m in migrations]


async def test_up_applies_showrooms(fresh_database_url: str) -> None:
    """migrate_up applies 0001 and creates showrooms with its columns and defaults."""
    async with trio_asyncio.open_loop():
        with trio.fail_after(TIMEOUT_S):
            applied = await migrate_up(fresh_database_url)
            rows = await fetch(
                fresh_database_url,
                "SELECT column_name, data_type, is_nullable, column_default"
                " FROM information_schema.columns WHERE table_name = 'showrooms'",
            )
            recorded = await history(fresh_database_url)
    assert [m.label for m in applied] == [m.label for m in REPO]
    assert applied[0].label == "0001_showrooms"
    columns = {
        r["column_name"]: (r["data_type"], r["is_nullable"], r["column_default"]) for r in rows
    }
    assert columns == SHOWROOM_COLUMNS
    assert recorded == [(m.version, m.name) for m in REPO]


async def test_status_before_and_after_up(fresh_database_url: str) -> None:
    """Status lists 0001 as pending (creating nothing), then as applied with a matching sum."""
    async with trio_asyncio.open_loop():
        with trio.fail_after(TIMEOUT_S):
            before = await migration_status(fresh_database_url)
            history_table_made = await exists(fresh_database_url, "schema_migrations")
            await migrate_up(fresh_database_url)
            after = await migration_status(fresh_database_url)
    assert before == [MigrationStatus(m.version, m.name, False, None, True) for m in REPO]
    assert not history_table_made
    assert [(s.version, s.name, s.applied, s.checksum_matches) for s in after] == [
        (m.version, m.name, True, True) for m in REPO
    ]
    assert all(status.applied_at is not None for status in after)


async def test_up_down_up_round_trip(fresh_database_url: str) -> None:
    """Down removes showrooms and its history row; up again brings both back."""
    async with trio_asyncio.open_loop():
        with trio.fail_after(TIMEOUT_S):
            await migrate_up(fresh_database_url)
            rolled_back = await migrate_down(fresh_database_url, steps=len(REPO))
            gone = not await exists(fresh_database_url, "showrooms")
            after_down = await history(fresh_database_url)
            reapplied = await migrate_up(fresh_database_url)
            back = await exists(fresh_database_url, "showrooms")
            after_up = await history(fresh_database_url)
    assert versions(rolled_back) == [m.version for m in reversed(REPO)]
    assert gone
    assert after_down == []
    assert versions(reapplied) == [m.version for m in REPO]
    assert back
    assert after_up == [(m.version, m.name) for m in REPO]


async def test_target_and_steps(fresh_database_url: str, tmp_path: Path) -> None:
    """Up stops at target; down rolls back the latest steps, newest first."""
    directory = write(tmp_path, CREATE_X, ADD_Z, CREATE_W)
    async with trio_asyncio.open_loop():
        with trio.fail_after(TIMEOUT_S):
            first = await migrate_up(fresh_database_url, directory, target=2)
            rest = await migrate_up(fresh_database_url, directory)
            rolled_back = await migrate_down(fresh_database_url, directory, steps=2)
            recorded = await history(fresh_database_url)
            with pytest.raises(MigrationError) as too_many:
                await migrate_down(fresh_database_url, directory, steps=2)
            with pytest.raises(MigrationError) as unknown_target:
                await migrate_up(fresh_database_url, directory, target=4)
    assert versions(first) == [1, 2]
    assert versions(rest) == [3]
    assert versions(rolled_back) == [3, 2]
    assert recorded == [(1, "create_x")]
    assert too_many.value.version is None
    assert unknown_target.value.version == 4


async def test_database_ahead_of_the_code(fresh_database_url: str, tmp_path: Path) -> None:
    """Older code on a newer schema: up applies nothing, status flags it, down refuses."""
    newer = write(tmp_path / "newer", CREATE_X, ADD_Z)
    older = write(tmp_path / "older", CREATE_X)
    async with trio_asyncio.open_loop():
        with trio.fail_after(TIMEOUT_S):
            await migrate_up(fresh_database_url, newer)
            applied = await migrate_up(fresh_database_url, older)
            statuses = await migration_status(fresh_database_url, older)
            with pytest.raises(MigrationError) as refused:
                await migrate_down(fresh_database_url, older)
            recorded = await history(fresh_database_url)
    assert applied == []
    assert [(s.version, s.name, s.applied, s.checksum_matches) for s in statuses] == [
        (1, "create_x", True, True),
        (2, "add_z", True, False),
    ]
    assert refused.value.version == 2
    assert recorded == [(1, "create_x"), (2, "add_z")]


async def test_concurrent_runs_apply_each_migration_once(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """Two runners started together: one applies everything, the other finds nothing."""
    directory = write(tmp_path, CREATE_X, ADD_Z, CREATE_W)
    results: list[list[Migration]] = []

    async def run() -> None:
        results.append(await migrate_up(fresh_database_url, directory))

    async with trio_asyncio.open_loop():
        with trio.fail_after(TIMEOUT_S):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                nursery.start_soon(run)
            recorded = await history(fresh_database_url)
    assert sorted(versions(r) for r in results) == [[], [1, 2, 3]]
    assert recorded == [(1, "create_x"), (2, "add_z"), (3, "create_w")]


async def test_runner_waits_for_the_lock(fresh_database_url: str) -> None:
    """While another session holds the migration lock, migrate_up waits and changes nothing."""
    results: list[list[Migration]] = []

    async def run() -> None:
        results.append(await migrate_up(fresh_database_url))

    async with trio_asyncio.open_loop():
        with trio.fail_after(TIMEOUT_S):
            holder = await trio_asyncio.aio_as_trio(asyncpg.connect)(fresh_database_url)
            try:
                lock = trio_asyncio.aio_as_trio(holder.execute)
                await lock("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run)
                    while not await fetch(fresh_database_url, ADVISORY_LOCKS, False):
                        pass
                    created_while_waiting = await exists(fresh_database_url, "showrooms")
                    await lock("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
            finally:
                with trio.CancelScope(shield=True):
                    await trio_asyncio.aio_as_trio(holder.close)()
    assert not created_while_waiting
    assert [versions(r) for r in results] == [[m.version for m in REPO]]


async def test_failed_migration_is_rolled_back_and_lock_released(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """A failing up file raises DatabaseError, records nothing, and leaves the lock free."""
    directory = write(tmp_path, CREATE_X, ("0002_broken", "CREATE TABLE v (;", "DROP TABLE v;"))
    async with trio_asyncio.open_loop():
        with trio.fail_after(TIMEOUT_S):
            with pytest.raises(DatabaseError) as raised:
                await migrate_up(fresh_database_url, directory)
            recorded = await history(fresh_database_url)
            held = await fetch(fresh_database_url, ADVISORY_LOCKS, True)
            (tmp_path / "0002_broken.up.sql").write_text("CREATE TABLE v (id INT);")
            applied = await migrate_up(fresh_database_url, directory)
    assert raised.value.sqlstate == "42601"
    assert recorded == [(1, "create_x")]
    assert held == []
    assert versions(applied) == [2]


async def test_up_refuses_when_policy_fails(fresh_database_url: str, tmp_path: Path) -> None:
    """A policy violation stops migrate_up before anything is applied."""
    directory = write(
        tmp_path,
        CREATE_X,
        ("0002_drop_y", "ALTER TABLE x DROP COLUMN y;", "ALTER TABLE x ADD COLUMN y INT;"),
    )
    async with trio_asyncio.open_loop():
        with trio.fail_after(TIMEOUT_S):
            with pytest.raises(MigrationError) as raised:
                await migrate_up(fresh_database_url, directory)
            touched = [
                await exists(fresh_database_url, table) for table in ("x", "schema_migrations")
            ]
    assert raised.value.version == 2
    assert [v.file for v in raised.value.violations] == ["0002_drop_y.up.sql"]
    assert touched == [False, False]


async def test_edited_after_apply_is_refused(fresh_database_url: str, tmp_path: Path) -> None:
    """An up file changed after it was applied: status flags it, up and down refuse."""
    directory = write(tmp_path, CREATE_X, ADD_Z)
    async with trio_asyncio.open_loop():
        with trio.fail_after(TIMEOUT_S):
            await migrate_up(fresh_database_url, directory, target=1)
            (tmp_path / "0001_create_x.up.sql").write_text("CREATE TABLE x (y BIGINT);")
            statuses = await migration_status(fresh_database_url, directory)
            with pytest.raises(MigrationError) as up_refused:
                await migrate_up(fresh_database_url, directory)
            with pytest.raises(MigrationError) as down_refused:
                await migrate_down(fresh_database_url, directory)
            recorded = await history(fresh_database_url)
            still_there = await exists(fresh_database_url, "x")
    assert [(s.version, s.applied, s.checksum_matches) for s in statuses] == [
        (1, True, False),
        (2, False, True),
    ]
    assert up_refused.value.version == 1
    assert down_refused.value.version == 1
    assert recorded == [(1, "create_x")]
    assert still_there
