"""The dead-letter queue from the admin HTTP API and from `lomash dlq`."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio_asyncio

from adapters import open_redis
from config import QueuePolicy, RedisSettings, Settings
from jobs import JobQueue, JobState, MemoryJobQueue, RedisJobQueue
from tests._service import running_service, service_settings
from tests.test_process import REPO

TOKEN = "s3cret-admin-token"
BOUND_S = 20.0


async def make_dead(queue: JobQueue, job_id: str) -> None:
    await queue.enqueue("q", "notify.email", {"to": "x"}, job_id=job_id)
    [lease] = await queue.lease("q", worker="t", limit=1, wait_s=BOUND_S)
    await queue.fail(lease, error_type="UpstreamError", error_message="SES said 503")


def admin_settings(migrated_url: str, redis_url: str, redis_prefix: str) -> Settings:
    base = service_settings(migrated_url, redis_url, redis_prefix)
    return dataclasses.replace(base, admin_token=TOKEN)


@asynccontextmanager
async def one_attempt_queue(
    kind: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[JobQueue]:
    """A fresh queue whose jobs die at their first failure: in memory, or a
    ``RedisJobQueue`` on the real Redis under a key prefix of its own (inside the
    caller's trio-asyncio loop)."""
    policy = QueuePolicy(attempts=1)
    if kind == "memory":
        await trio.lowlevel.checkpoint()
        yield MemoryJobQueue(default=policy)
        return
    settings = RedisSettings(url=redis_url, prefix=redis_prefix)
    async with open_redis(settings, cleanup_s=1.0) as cache:
        yield RedisJobQueue(cache, prefix=f"jobs-{secrets.token_hex(6)}", default=policy)


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_the_admin_api_lists_inspects_requeues_and_purges_dead_jobs(
    kind: str, migrated_url: str, redis_url: str, redis_prefix: str
) -> None:
    """On either queue, with the token: list, show, requeue, purge one / all, counts, 404, 422."""
    settings = admin_settings(migrated_url, redis_url, redis_prefix)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        trio_asyncio.open_loop(),
        one_attempt_queue(kind, redis_url, redis_prefix) as queue,
        running_service(settings, queue) as (app, _),
    ):
        client = app.test_client()
        with trio.fail_after(BOUND_S):
            for job_id in ("d2", "d3", "d1"):  # died in this order: not the ids' order
                await make_dead(queue, job_id)
            listing = await client.get("/admin/queues/q/dead", headers=auth)
            listed = await listing.get_json()
            limited = await (
                await client.get("/admin/queues/q/dead?limit=1", headers=auth)
            ).get_json()
            bad_limits = [
                await client.get(f"/admin/queues/q/dead?limit={limit}", headers=auth)
                for limit in ("0", "abc", "1001")
            ]
            other = await (await client.get("/admin/queues/other/dead", headers=auth)).get_json()
            shown = await (await client.get("/admin/queues/q/dead/d1", headers=auth)).get_json()
            absent = await client.get("/admin/queues/q/dead/absent", headers=auth)

            requeued = await client.post("/admin/queues/q/dead/d1/requeue", headers=auth)
            state_after_requeue = await queue.state("q", "d1")
            shown_alive = await client.get("/admin/queues/q/dead/d1", headers=auth)
            requeued_again = await client.post("/admin/queues/q/dead/d1/requeue", headers=auth)
            after_requeue = await (
                await client.get("/admin/queues/q/dead", headers=auth)
            ).get_json()
            [lease] = await queue.lease("q", worker="t", limit=1, wait_s=BOUND_S)
            await queue.fail(lease, error_type="Bounced", error_message="no such mailbox")
            second_life = await (
                await client.get("/admin/queues/q/dead/d1", headers=auth)
            ).get_json()

            one = await (await client.delete("/admin/queues/q/dead/d2", headers=auth)).get_json()
            none = await (await client.delete("/admin/queues/q/dead/d2", headers=auth)).get_json()
            refused = await client.delete("/admin/queues/q/dead", headers=auth)
            everything = await client.delete("/admin/queues/q/dead?all=true", headers=auth)
            missing = await client.get("/admin/queues/q/dead/d2", headers=auth)
            counts = await (await client.get("/admin/queues/q", headers=auth)).get_json()
            left = await queue.dead("q", limit=10)

    assert listing.headers["Cache-Control"] == "no-store"
    assert listed["queue"] == "q"
    assert [d["job_id"] for d in listed["dead"]] == ["d1", "d3", "d2"]
    newest = listed["dead"][0]
    assert (newest["kind"], newest["attempts"]) == ("notify.email", 1)
    assert (newest["last_error_type"], newest["last_error"]) == ("UpstreamError", "SES said 503")
    assert isinstance(newest["died_at"], float)
    assert [d["job_id"] for d in limited["dead"]] == ["d1"]
    for bad in bad_limits:
        assert bad.status_code == 422
        error = (await bad.get_json())["error"]
        assert (error["code"], error["field"]) == ("invalid_field", "limit")
    assert other == {"queue": "other", "dead": []}
    assert [(h["attempt"], h["outcome"], h["error_type"]) for h in shown["history"]] == [
        (1, "failed", "UpstreamError")
    ]
    assert shown["history"][0]["error_message"] == "SES said 503"
    assert shown["history"][0]["started_at"] <= shown["history"][0]["ended_at"] <= shown["died_at"]
    assert shown["enqueued_at"] <= shown["died_at"]
    assert (shown["job_id"], shown["kind"], shown["payload"]) == ("d1", "notify.email", {"to": "x"})
    assert absent.status_code == 404
    assert (await absent.get_json())["error"]["code"] == "not_found"

    assert requeued.status_code == 200
    assert await requeued.get_json() == {"requeued": "d1"}
    assert state_after_requeue is JobState.WAITING
    assert shown_alive.status_code == 404  # waiting again: not in the DLQ
    assert requeued_again.status_code == 404
    assert [d["job_id"] for d in after_requeue["dead"]] == ["d3", "d2"]
    assert lease.job.attempt == 1  # attempts start afresh
    assert [(h["attempt"], h["error_type"]) for h in second_life["history"]] == [(1, "Bounced")]

    assert one == {"purged": 1}
    assert none == {"purged": 0}
    assert refused.status_code == 422
    assert (await refused.get_json())["error"]["code"] == "confirmation_required"
    assert await everything.get_json() == {"purged": 2}
    assert missing.status_code == 404
    assert counts == {
        "queue": "q",
        "waiting": 0,
        "delayed": 0,
        "active": 0,
        "completed": 0,
        "dead": 0,
        "stalled_total": 0,
        "oldest_waiting_age_s": None,  # nothing waits
    }
    assert left == []


async def test_the_admin_api_needs_the_token(
    migrated_url: str, redis_url: str, redis_prefix: str
) -> None:
    """No token or a wrong one: 401 unauthorized; no token configured: no admin API."""
    queue = MemoryJobQueue()
    settings = admin_settings(migrated_url, redis_url, redis_prefix)
    async with trio_asyncio.open_loop():
        async with running_service(settings, queue) as (app, _):
            client = app.test_client()
            missing = await client.get("/admin/queues/q/dead")
            wrong = await client.get(
                "/admin/queues/q/dead", headers={"Authorization": "Bearer nope"}
            )
        unprotected = dataclasses.replace(settings, admin_token=None)
        async with running_service(unprotected, queue) as (app, _):
            absent = await app.test_client().get("/admin/queues/q/dead")
    assert (missing.status_code, wrong.status_code, absent.status_code) == (401, 401, 404)
    assert (await missing.get_json())["error"]["code"] == "unauthorized"


def dlq(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "dlq", *arguments],
        cwd=REPO,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        check=False,
    )


async def test_the_dlq_command_lists_shows_requeues_and_purges(
    redis_url: str, redis_prefix: str
) -> None:
    """`lomash dlq list|show|requeue|purge` against the real Redis queue."""
    prefix = f"{redis_prefix}{secrets.token_hex(4)}:"
    environment = {
        "LOMASH_REDIS_URL": redis_url,
        "LOMASH_REDIS_PREFIX": prefix,
        "LOMASH_JOBS_ATTEMPTS": "1",
    }
    async with (
        trio_asyncio.open_loop(),
        open_redis(RedisSettings(url=redis_url, prefix=prefix), cleanup_s=1.0) as cache,
    ):
        queue = RedisJobQueue(cache, prefix="jobs", default=QueuePolicy(attempts=1))
        with trio.fail_after(BOUND_S):
            await make_dead(queue, "cli-1")
            await make_dead(queue, "cli-2")
            listed = await trio.to_thread.run_sync(dlq, environment, "list", "q")
            shown = await trio.to_thread.run_sync(dlq, environment, "show", "q", "cli-1")
            requeued = await trio.to_thread.run_sync(dlq, environment, "requeue", "q", "cli-1")
            state = await queue.state("q", "cli-1")
            refused = await trio.to_thread.run_sync(dlq, environment, "purge", "q")
            purged = await trio.to_thread.run_sync(dlq, environment, "purge", "q", "--all")
            left = await queue.dead("q", limit=10)
    assert listed.returncode == 0
    assert "cli-1" in listed.stdout
    assert "cli-2" in listed.stdout
    assert "UpstreamError: SES said 503" in listed.stdout
    detail = json.loads(shown.stdout)
    assert detail["job"]["id"] == "cli-1"
    assert detail["history"][0]["error_message"] == "SES said 503"
    assert requeued.returncode == 0
    assert state is JobState.WAITING
    assert refused.returncode == 2
    assert purged.stdout.strip() == "purged 1"
    assert left == []
