"""Notifications per second through SES (a moto server), ours vs the ceiling.

    python -m bench.notify [--emails 400] [--concurrency 8]

- ceiling: the same ``SendEmail`` calls made directly with aiobotocore (our SES
  adapter, nothing else), ``--concurrency`` at a time;
- ours: ``--emails`` ``appointment.confirmed`` jobs in the Redis queue, drained by a
  JobWorker through the notifier actor: each job reads its booking from Postgres,
  renders the templates, asks the SES sender actor (breaker, retries), and records
  its SENT row and acceptance (``record_effect_once``) before it completes.

moto runs as its own process, so it does not share our interpreter's GIL. Prints
emails/s for both and the ratio ours / ceiling (higher is better, 1.0 the most).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import boto3
import structlog
import trio
import trio_asyncio

from actors import Notifier, Providers, provider_retry, sender_spec
from adapters import (
    Email,
    PostgresNotificationStore,
    load_seed,
    open_database,
    open_redis,
    open_ses,
)
from bench.http import bench_database
from bench.jobs import _delete_prefix as delete_prefix
from config import (
    DatabaseSettings,
    EmailSettings,
    JobSettings,
    NotificationSettings,
    RedisSettings,
    RuntimeSettings,
    SesSettings,
)
from devservers import free_port
from jobs import DeadLetterAlerts, JobWorker, RedisJobQueue, RunJob, SystemClock
from supervisors import ActorSpec, SupervisorSpec, TaskSpec, open_supervisor

REDIS_URL = "redis://127.0.0.1:6379/0"
SENDER = "appointments@lomashwood.test"


@contextmanager
def moto_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        boto3.client(
            "sesv2",
            region_name="eu-west-2",
            endpoint_url=url,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_email_identity(EmailIdentity=SENDER)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def ses_settings(url: str) -> SesSettings:
    return SesSettings(
        region="eu-west-2",
        endpoint_url=url,
        access_key_id="bench",
        secret_access_key="bench",
        timeout_s=10.0,
    )


async def ceiling(url: str, emails: int, concurrency: int) -> float:
    slots = trio.Semaphore(concurrency)
    async with open_ses(ses_settings(url), sender=SENDER) as ses:

        async def one(n: int) -> None:
            async with slots:
                await ses.send(Email(f"c{n}@example.com", "Confirmed", "text", "<p>html</p>"))

        begin = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for n in range(emails):
                nursery.start_soon(one, n)
        return emails / (time.perf_counter() - begin)


async def _appointments(database_url: str, emails: int) -> list[str]:
    """(asyncio side) ``emails`` confirmed bookings, one per customer."""
    ids = [str(uuid.uuid4()) for _ in range(emails)]
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=30)
    connection = await asyncpg.connect(database_url)
    try:
        await connection.executemany(
            """INSERT INTO appointments (id, reference, type, category, status, consultant_id,
               showroom_id, starts_at, ends_at, customer_name, customer_email, customer_phone,
               customer_postcode, manage_token_hash)
               VALUES ($1, $2, 'SHOWROOM', 'KITCHEN', 'CONFIRMED', 'grace-okafor', 'leeds',
               $3, $4, 'Ada Lovelace', $5, '', 'LS1 6HD', '\\x00')""",
            [
                (
                    uuid.UUID(i),
                    f"LW-B{n:06d}",
                    start + timedelta(hours=n),
                    start + timedelta(hours=n, minutes=59),
                    f"o{n}@example.com",
                )
                for n, i in enumerate(ids)
            ],
        )
    finally:
        await connection.close()
    return ids


async def ours(url: str, database_url: str, emails: int, concurrency: int) -> float:
    prefix = f"lomash_bench:{secrets.token_hex(4)}:"
    runtime = RuntimeSettings()
    clock = SystemClock()
    async with (
        trio_asyncio.open_loop(),
        open_database(
            DatabaseSettings(url=database_url), application="bench", cleanup_s=2.0
        ) as database,
        open_redis(RedisSettings(url=REDIS_URL, prefix=prefix), cleanup_s=2.0) as cache,
        open_ses(ses_settings(url), sender=SENDER) as ses,
    ):
        await load_seed(database_url)
        ids = await trio_asyncio.aio_as_trio(_appointments)(database_url, emails)
        queue = RedisJobQueue(cache, prefix="jobs")
        for appointment_id in ids:
            await queue.enqueue(
                "notifications", "appointment.confirmed", {"appointment_id": appointment_id}
            )
        sender = sender_spec(
            "ses-sender",
            lambda: ses,
            runtime,
            timeout_s=10.0,
            retry=provider_retry(3, 0.2),
            concurrency=concurrency,
            clock=clock,
        )
        alerts = DeadLetterAlerts(None, timeout_s=1.0)
        notifier: ActorSpec[RunJob, str] = ActorSpec(
            "notifier",
            lambda: Notifier(
                PostgresNotificationStore(database),
                Providers(email=[("ses", sender.ref)], sms=[]),
                NotificationSettings(),
                EmailSettings(sender=SENDER),
                alerts,
                token_key=b"bench",
                clock=clock,
                retry_budget_s=10.0,
                outage_retry_s=1.0,
            ),
            mailbox=dataclasses.replace(
                runtime.mailbox, concurrency=concurrency, message_timeout_s=30.0, ask_timeout_s=31.0
            ),
        )
        workers: list[JobWorker] = []

        def worker() -> JobWorker:
            made = JobWorker(
                "bench-worker",
                queue,
                "notifications",
                lambda: {"appointment.confirmed": notifier.ref},
                JobSettings(concurrency=concurrency, poll_s=1.0),
                alerts,
                cleanup_s=1.0,
            )
            workers.append(made)
            return made

        begin = time.perf_counter()
        async with open_supervisor(
            SupervisorSpec("bench", [sender, notifier, TaskSpec("worker", worker)])
        ):
            while not workers or workers[0].statistics().completed < emails:  # noqa: ASYNC110
                await trio.sleep(0.005)  # a bench polls: an Event would add to the hot path
            elapsed = time.perf_counter() - begin
            assert workers[0].statistics().failed == 0
        await cache.run(lambda client: delete_prefix(client, prefix))
    return emails / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    arguments = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with moto_server() as url, bench_database() as database_url:
        top = trio.run(ceiling, url, arguments.emails, arguments.concurrency)
        got = trio.run(ours, url, database_url, arguments.emails, arguments.concurrency)
    report = {
        "emails": arguments.emails,
        "concurrency": arguments.concurrency,
        "ceiling_direct_aiobotocore_per_s": round(top, 1),
        "ours_queue_worker_notifier_per_s": round(got, 1),
        "ratio_ours_over_ceiling": round(got / top, 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
