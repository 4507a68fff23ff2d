"""Outbox -> Redis queue on the real servers: a Redis outage loses nothing."""

from __future__ import annotations

import secrets
from typing import Any

import trio
import trio_asyncio

from adapters import Connection, add_to_outbox, open_database, open_redis
from chaos import open_proxy
from config import DatabaseSettings, OutboxSettings, RedisSettings
from jobs import OutboxRelay, RedisJobQueue
from supervisors import SupervisorSpec, TaskSpec, open_supervisor
from tests.conftest import REDIS_PORT

BOUND_S = 30.0
JOBS = 50


async def write_with_jobs(connection: Connection, prefix: str) -> list[str]:
    ids = []
    async with connection.transaction():
        for n in range(JOBS):
            ids.append(
                await add_to_outbox(
                    connection,
                    queue="notifications",
                    kind="booking.confirmed",
                    payload={"n": n},
                    job_id=f"{prefix}-{n:02d}",
                )
            )
    return ids


async def outbox_size(connection: Connection) -> Any:
    return await connection.fetchval("SELECT count(*) FROM outbox")


async def test_jobs_written_while_redis_is_down_are_all_delivered_when_it_returns(
    migrated_url: str, redis_prefix: str
) -> None:
    """Redis cut: the outbox fills and holds; Redis back: every job reaches the queue once."""
    prefix = f"{redis_prefix}{secrets.token_hex(4)}:"
    relay_settings = OutboxSettings(poll_s=0.05, retry_min_s=0.05, retry_max_s=0.2)
    async with (
        trio_asyncio.open_loop(),
        open_proxy(REDIS_PORT) as proxy,
        open_database(
            DatabaseSettings(url=migrated_url), application="tests", cleanup_s=2.0
        ) as database,
        open_redis(
            RedisSettings(
                url=f"redis://127.0.0.1:{proxy.port}/0",
                prefix=prefix,
                reconnect_min_s=0.05,
                reconnect_max_s=0.2,
            ),
            cleanup_s=1.0,
        ) as cache,
    ):
        queue = RedisJobQueue(cache, prefix="jobs")
        relay = OutboxRelay(database, queue, relay_settings)
        tree = SupervisorSpec("root", [TaskSpec("relay", lambda: relay)])
        with trio.fail_after(BOUND_S):
            async with open_supervisor(tree):
                proxy.reset()  # Redis unreachable from here on
                ids = await database.run(lambda c: write_with_jobs(c, prefix))
                while True:  # the relay tries, and Redis refuses it
                    if relay.statistics().refused >= 2:
                        break
                    await trio.sleep(0.01)
                assert await database.run(outbox_size) == JOBS
                proxy.forward()
                while True:  # ... until Redis is back and the outbox drains
                    if await database.run(outbox_size) == 0:
                        break
                    await trio.sleep(0.05)
            leased: list[str] = []
            while len(leased) < JOBS:
                batch = await queue.lease("notifications", worker="t", limit=100, wait_s=0.5)
                assert batch, "a relayed job is missing from the queue"
                leased.extend(lease.job.id for lease in batch)
    assert sorted(leased) == sorted(ids)
