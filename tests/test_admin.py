"""The dead-letter queue from the admin HTTP API and from `lomash dlq`."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys

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
    [lease] = await queue.lease("q", worker="t", limit=1, wait_s=1.0)
    await queue.fail(lease, error_type="UpstreamError", error_message="SES said 503")


def admin_settings(migrated_url: str, redis_url: str, redis_prefix: str) -> Settings:
    base = service_settings(migrated_url, redis_url, redis_prefix)
    return dataclasses.replace(base, admin_token=TOKEN)


async def test_the_admin_api_lists_inspects_requeues_and_purges_dead_jobs(
    migrated_url: str, redis_url: str, redis_prefix: str
) -> None:
    """With the bearer token: list, show (history), requeue, purge one, purge all."""
    queue = MemoryJobQueue(default=QueuePolicy(attempts=1))
    settings = admin_settings(migrated_url, redis_url, redis_prefix)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with trio_asyncio.open_loop(), running_service(settings, queue) as (app, _):
        client = app.test_client()
        with trio.fail_after(BOUND_S):
            for job_id in ("d1", "d2", "d3"):
                await make_dead(queue, job_id)
            listed = await (await client.get("/admin/queues/q/dead", headers=auth)).get_json()
            shown = await (await client.get("/admin/queues/q/dead/d1", headers=auth)).get_json()
            requeued = await client.post("/admin/queues/q/dead/d1/requeue", headers=auth)
            state_after_requeue = await queue.state("q", "d1")
            one = await (await client.delete("/admin/queues/q/dead/d2", headers=auth)).get_json()
            refused = await client.delete("/admin/queues/q/dead", headers=auth)
            everything = await client.delete("/admin/queues/q/dead?all=true", headers=auth)
            missing = await client.get("/admin/queues/q/dead/d2", headers=auth)
            counts = await (await client.get("/admin/queues/q", headers=auth)).get_json()
    assert [d["job_id"] for d in listed["dead"]] == ["d3", "d2", "d1"]
    assert listed["dead"][0]["last_error"] == "SES said 503"
    assert [(h["attempt"], h["outcome"], h["error_type"]) for h in shown["history"]] == [
        (1, "failed", "UpstreamError")
    ]
    assert shown["payload"] == {"to": "x"}
    assert requeued.status_code == 200
    assert state_after_requeue is JobState.WAITING
    assert one == {"purged": 1}
    assert refused.status_code == 422
    assert (await refused.get_json())["error"]["code"] == "confirmation_required"
    assert await everything.get_json() == {"purged": 1}
    assert missing.status_code == 404
    assert counts["dead"] == 0


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
