"""Demo data for ``make run``: showrooms, consultants and their hours, products
(idempotent SQL)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import trio
import trio_asyncio

from adapters._migrations import MIGRATIONS_DIR

__all__ = ["DEMO_SEED", "load_seed", "staffed_showroom_sql"]

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


def staffed_showroom_sql(
    showroom_id: str,
    *,
    consultants: int,
    prefix: str,
    hours: tuple[str, str] = ("00:00", "00:00"),
) -> str:
    """SQL for a showroom with ``consultants`` consultants (ids ``prefix`` + a
    zero-padded number), all of them KITCHEN and BEDROOM, working ``hours`` every day
    (the default, 00:00-00:00: around the clock): the benches' and the chaos
    experiments' showrooms, where a load never runs out of slots."""
    width = len(str(consultants - 1))
    starts, ends = hours
    return f"""
INSERT INTO showrooms (id, name, address, city, postcode)
VALUES ('{showroom_id}', '{showroom_id}', '1 High St', 'Leeds', 'LS1 1AA');
INSERT INTO consultants (id, name, email, showroom_id, specialisations)
SELECT '{prefix}' || lpad(n::text, {width}, '0'), 'Consultant ' || n,
    '{prefix}' || n || '@example.com', '{showroom_id}', '{{KITCHEN,BEDROOM}}'
FROM generate_series(0, {consultants - 1}) AS n;
INSERT INTO consultant_hours (consultant_id, weekday, starts, ends)
SELECT id, weekday, '{starts}', '{ends}' FROM consultants, generate_series(0, 6) AS weekday
WHERE showroom_id = '{showroom_id}';
"""
