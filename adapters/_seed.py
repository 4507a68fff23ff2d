"""Demo data for ``make run``: showrooms, consultants and their hours, products
(idempotent SQL)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import trio
import trio_asyncio

from adapters._migrations import MIGRATIONS_DIR

__all__ = ["DEMO_SEED", "load_seed"]

DEMO_SEED = MIGRATIONS_DIR / "demo" / "seed.sql"


async def load_seed(url: str, path: Path = DEMO_SEED) -> None:
    """Run the seed file in one transaction (from trio, inside ``open_loop``)."""
    sql = await trio.Path(path).read_text()

    async def load() -> None:
        connection = await asyncpg.connect(url)
        try:
            async with connection.transaction():
                await connection.execute(sql)
        finally:
            await connection.close()

    await trio_asyncio.aio_as_trio(load)()
