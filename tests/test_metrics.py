"""``GET /metrics`` after a scripted scenario on the whole tree: bookings, a conflict,
random paths, a dead job, Postgres cut until a breaker opens. Every value checked
exactly, and the scrape itself answers 200 while Postgres is down."""

from __future__ import annotations

import dataclasses
import secrets
import uuid

import httpx
import trio_asyncio
from prometheus_client.parser import text_string_to_metric_families

from adapters import open_redis
from chaos import open_proxy
from config import QueuePolicy, Settings
from jobs import RedisJobQueue
from tests._booking import (
    book,
    booking_body,
    local,
    next_weekday,
    prepare_database,
    redis_answers,
    running_tree,
)
from tests._service import with_database_url
from tests.conftest import fetch, port_of
from tests.test_alert_rules import rule_metrics
from tests.test_postgres import via
from tests.test_process import environment, service

__all__ = ["environment"]  # the fixture, used by name below

type Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


async def test_metrics_after_a_scripted_scenario(settings: Settings) -> None:
    assert settings.database.url is not None
    url = settings.database.url
    monday = next_weekday(0)
    # The breaker half-opens as the gate probes (reconnect_max_s): slow both down so
    # the open breaker is still open when scraped.
    slow_probes = dataclasses.replace(settings.database, reconnect_max_s=30.0)
    async with trio_asyncio.open_loop(), open_proxy(port_of(url)) as proxy:
        await prepare_database(url)
        tree_settings = dataclasses.replace(
            with_database_url(settings, via(proxy, url)),
            database=dataclasses.replace(slow_probes, url=via(proxy, url)),
        )
        async with running_tree(tree_settings) as client:
            await redis_answers(client)
            booked = [await book(client, booking_body(local(monday, h))) for h in (9, 10)]
            taken = await book(client, booking_body(local(monday, 9)))
            first = booked[0].json()
            shown = await client.get(
                f"/v1/appointments/{first['id']}", headers={"X-Manage-Token": first["manage_token"]}
            )
            strays = [await client.get(f"/{secrets.token_hex(8)}/{uuid.uuid4()}") for _ in range(3)]
            async with open_redis(settings.redis, cleanup_s=1.0) as cache:
                queue = RedisJobQueue(cache, prefix="jobs", default=QueuePolicy(attempts=1))
                await queue.enqueue("notifications", "test.dead", {}, job_id="dead-one")
                # Whoever leases it (the tree's worker or this test) fails it: 1 attempt.
                leases = await queue.lease("notifications", worker="t", limit=1, wait_s=1.0)
                for lease in leases:
                    await queue.fail(lease, error_type="Boom", error_message="boom")
            for channel, provider, status, hours_ago in (
                ("email", "ses", "SENT", 1),
                ("email", "ses", "SENT", 2),
                ("sms", "twilio", "FAILED", 3),
                ("email", "ses", "FAILED", 25),  # older than the window
            ):
                await fetch(
                    url,
                    """INSERT INTO notification_logs (job_id, kind, reference, channel,
                       provider, recipient, status, attempted_at)
                       VALUES ('j', 'appointment.confirmed', 'R', $1, $2, 'x', $3,
                               now() - make_interval(hours => $4))""",
                    channel,
                    provider,
                    status,
                    hours_ago,
                )
            before = await client.get("/metrics")
            proxy.reset()
            logins = [
                await client.post(
                    "/v1/auth/login", json={"email": "a@example.com", "password": "whatever!!"}
                )
                for _ in range(6)
            ]
            during = await client.get("/metrics")
    assert [b.status_code for b in booked] == [201, 201]
    assert taken.status_code == 409
    assert shown.status_code == 200
    assert [s.status_code for s in strays] == [404] * 3
    assert [a.status_code for a in logins] == [503] * 6
    assert [a.json()["error"]["code"] for a in logins][-1] == "circuit_open"
    assert before.status_code == during.status_code == 200
    assert before.headers["Content-Type"].startswith("text/plain; version=0.0.4")

    up = samples(before.text)
    requests = "lomash_http_requests_total"
    assert value(up, requests, method="POST", route="/v1/appointments", status="201") == 2
    assert value(up, requests, method="POST", route="/v1/appointments", status="409") == 1
    assert value(up, requests, method="GET", route="/v1/appointments/<raw_id>", status="200") == 1
    assert value(up, requests, method="GET", route="unmatched", status="404") == 3
    assert not any("token" in dict(labels).get("route", "") for _, labels in up)
    durations = "lomash_http_request_duration_seconds_count"
    assert value(up, durations, method="POST", route="/v1/appointments") == 3
    assert value(up, "lomash_dependency_up", dependency="postgres") == 1
    assert value(up, "lomash_dependency_up", dependency="redis") == 1
    assert value(up, "lomash_queue_jobs", queue="notifications", state="dead") == 1
    assert value(up, "lomash_outbox") is not None
    assert value(up, "lomash_emails_undelivered") == 0
    assert value(up, "lomash_queue_oldest_waiting_age_seconds", queue="bookings") is None
    sent = "lomash_notifications_24h"
    assert value(up, sent, channel="email", provider="ses", status="SENT") == 2
    assert value(up, sent, channel="sms", provider="twilio", status="FAILED") == 1
    assert value(up, sent, channel="email", provider="ses", status="FAILED") is None  # > 24 h
    served = {name for name, _ in up}
    assert rule_metrics() <= served  # deploy/alerts.yml reads what is served
    assert value(up, "lomash_breaker_state", actor="accounts") == 0
    assert value(up, "lomash_actor_mailbox_capacity", actor="slot-booker") == (
        settings.booking.mailbox_capacity
    )

    down = samples(during.text)
    assert value(down, requests, method="POST", route="/v1/auth/login", status="503") == 6
    assert value(down, "lomash_breaker_state", actor="accounts") == 2
    assert value(down, "lomash_breaker_transitions_total", actor="accounts", to="open") == 1
    assert value(down, "lomash_breaker_rejected_total", actor="accounts") == 1
    assert value(down, "lomash_dependency_up", dependency="postgres") == 0
    assert value(down, "lomash_dependency_outages_total", dependency="postgres") == 1
    # The outbox is in Postgres: left out of this scrape, and the miss counted.
    assert value(down, "lomash_outbox") is None
    assert value(down, "lomash_scrape_errors_total", source="postgres") == 1
    # Counted as it was answered: the scrape before this one is in.
    assert value(down, requests, method="GET", route="/metrics", status="200") == 1


async def test_two_workers_counts_add_up(environment: dict[str, str]) -> None:
    """``--workers 2``: 40 requests on fresh connections (spread over both workers);
    any worker's scrape counts all 40."""
    async with service({**environment, "LOMASH_WORKERS": "2"}, test_routes=False) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
            for _ in range(40):
                answer = await client.get("/health/live", headers={"Connection": "close"})
                assert answer.status_code == 200
            scrapes = [samples((await client.get("/metrics")).text) for _ in range(6)]
        pids = {line.get("pid") for line in running.logs.named("worker_started")}
    counted = [
        value(s, "lomash_http_requests_total", method="GET", route="/health/live", status="200")
        for s in scrapes
    ]
    assert len(pids) == 2
    assert counted == [40] * 6
    workers = {
        dict(labels).get("worker")
        for s in scrapes
        for (name, labels) in s
        if name == "lomash_actor_processed_total"
    }
    assert workers <= {str(pid) for pid in pids}
