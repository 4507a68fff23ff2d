"""``python -m bench.load`` (the load test, `make load`) against a service the test starts.

A tiny shape (a few users for a few seconds) checks the report and the exit status,
never the service's speed: that is the load test's own target (``--p95-ms``), here set
so it cannot be missed, then so it cannot be met. bench.load runs as a process of its
own (and locust in one of its own under it): its gevent monkey-patching never reaches
this test process.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

import trio

from tests.test_process import REPO, service

BOUND_S = 35.0
# About 5 s of load: 3 users, a burst of 6, short think times so bookings are made.
TINY = [
    *("--users", "3", "--burst-users", "6", "--warmup-s", "1", "--steady-s", "2"),
    *("--burst-s", "2", "--recovery-s", "0", "--wait-min-s", "0.05", "--wait-max-s", "0.2"),
]
ROW = re.compile(
    r"^(?P<phase>\w+)\s+(?P<users>\d+|-)\s+(?P<kind>\w+)\s+(?P<requests>\d+)\s+"
    r"(?P<p50>[\d.]+)\s+(?P<p95>[\d.]+)\s+(?P<p99>[\d.]+)\s+(?P<max>[\d.]+)\s+"
    r"(?P<made>\d+|-)\s+(?P<taken>\d+|-)\s+(?P<errors>\d+)$"
)


def load(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.load", *arguments],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        check=False,
    )


def test_a_non_loopback_url_is_refused_without_allow_remote() -> None:
    refused = load("--url", "http://192.0.2.10:8000")
    assert refused.returncode == 2
    assert "not a loopback address (--allow-remote to load it)" in refused.stderr


async def test_the_load_test_reports_per_kind_and_fails_a_target_it_cannot_meet(
    fresh_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    """Against `lomash serve` with the demo seed: p50 <= p95 <= p99 per phase and kind,
    bookings made, no errors, exit 0; with a target no service meets, exit 1 saying
    which percentile missed it."""
    environment = {
        "LOMASH_DATABASE_URL": fresh_database_url,
        "LOMASH_REDIS_URL": redis_url,
        "LOMASH_REDIS_PREFIX": f"{redis_prefix}{secrets.token_hex(4)}:",
        "LOMASH_JOBS_QUEUES": "",
        "LOMASH_AUTH_RATE_LIMITS_ENABLED": "false",  # every visitor is 127.0.0.1
    }
    async with service(environment, "--migrate", "--seed", test_routes=False) as running:
        met = await trio.to_thread.run_sync(lambda: load("--url", running.url, *TINY))
        missed = await trio.to_thread.run_sync(
            lambda: load("--url", running.url, *TINY, "--p95-ms", "0.001")
        )

    assert met.returncode == 0, met.stdout + met.stderr
    rows = [m.groupdict() for line in met.stdout.splitlines() if (m := ROW.match(line))]
    kinds = {(row["phase"], row["kind"]) for row in rows}
    for kind in ("showrooms", "products", "availability", "booking"):
        assert ("all", kind) in kinds
    for row in rows:
        assert float(row["p50"]) <= float(row["p95"]) <= float(row["p99"]) <= float(row["max"])
        assert row["errors"] == "0"
    booking = next(row for row in rows if (row["phase"], row["kind"]) == ("all", "booking"))
    assert int(booking["made"]) > 0
    assert re.search(r"^bookings: [1-9]\d* booked \(201\)", met.stdout, re.MULTILINE)
    assert met.stdout.rstrip().endswith("PASSED: every load target met")

    assert missed.returncode == 1, missed.stdout + missed.stderr
    assert "FAILED: a load target was missed" in missed.stderr
    assert re.search(
        r"booking p95 in (steady|burst) is [\d.]+ ms: the target is < 0.001 ms", missed.stderr
    )
