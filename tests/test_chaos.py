"""`lomash chaos run NAME --local`: each experiment of the chaos table passes against a
local stack, fails against a service made wrong on purpose, and rolls its fault back
on Ctrl-C.

The experiments run as the operator runs them (a `lomash` process, its JSON report
read afterwards). Their faults are short here (a few seconds: the shape is what is
proven, not endurance); the verdicts' own thresholds are the experiments' hypotheses
(a breaker's answer is fast next to the 2 s it saves), not the tests'.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from chaos._clusters import find_postgres_bin, find_redis_server
from tests.conftest import ADMIN_URL, REDIS_URL, fetch
from tests.test_process import REPO, environment, service

__all__ = ["environment"]  # the fixture, used by name below

BOUND_S = 240.0

# name -> (--duration, the measurement the experiment must report)
EXPERIMENTS = {
    "pod-killer": ("6", "kills"),
    "latency-injector": ("12", "fast_fail_p50_ms"),
    "network-partition": ("6", "detected_after_s"),
    "cpu-hog": ("5", "booking_p50_ms_during"),
    "memory-leak": ("20", "replaced_serving_s"),
    "postgres-failover": ("6", "write_gap_s"),
    "redis-failover": ("6", "sentinel_failover_s"),
}
NEEDS = {
    "postgres-failover": ("PostgreSQL server binaries", find_postgres_bin),
    "redis-failover": ("redis-server", find_redis_server),
}


def chaos(tmp_path: Path, *arguments: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "service", "chaos", "run", *arguments, "--report", str(report)],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        check=False,
    )
    print(done.stdout, done.stderr[-3000:])
    return done, json.loads(report.read_text()) if report.exists() else None


def _local(tmp_path: Path, name: str, *extra: str) -> list[str]:
    duration, _ = EXPERIMENTS[name]
    return [
        name,
        "--local",
        "--folder",
        str(tmp_path / "runs"),
        "--duration",
        duration,
        "--warmup",
        "2",
        "--recovery",
        "30",
        "--postgres-url",
        ADMIN_URL,
        "--redis-url",
        REDIS_URL,
        *extra,
    ]


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_experiment_passes_against_a_local_stack(tmp_path: Path, name: str) -> None:
    if name in NEEDS and NEEDS[name][1]() is None:
        pytest.skip(f"{name} starts its own servers: no {NEEDS[name][0]} on this machine")
    done, report = chaos(tmp_path, *_local(tmp_path, name))
    assert done.returncode == 0, done.stdout
    assert report["verdict"] == "passed"
    assert done.stdout.strip().splitlines()[-1].startswith(f"{name}: PASSED")
    assert report["steady_state_before"]["met"]
    assert report["steady_state_after"]["met"]
    assert report["rollbacks"][0]["done"]
    assert all(not found for found in report["invariants"].values())
    bookings = report["load"]["outcomes"]
    assert bookings["accepted"] > 0
    # Orders too (on a local Stripe): every one placed is read back, total unchanged.
    assert bookings["orders_placed"] > 0
    assert bookings["orders_kept"] == bookings["orders_placed"]
    # Every accepted booking settled: confirmed, or cancelled with its reason.
    assert bookings["accepted"] == bookings.get("ended_confirmed", 0) + bookings.get(
        "ended_cancelled", 0
    )
    assert EXPERIMENTS[name][1] in report["measurements"]
    assert "recovery_s" in report["measurements"]
    if name == "pod-killer":
        kills = report["measurements"]["kills"]
        assert [k["serving_s"] is not None for k in kills] == [True, True]
        assert report["measurements"]["bookings_answered_after_retrying"] > 0
    if name == "network-partition":
        assert report["measurements"]["confirmed_during"] > 0
    if name == "postgres-failover":
        assert report["measurements"]["bookings_pending_during_gap"] > 0
        assert bookings["accepted_pending"] > 0


@pytest.mark.parametrize(
    ("broken", "caught"),
    [("500-on-outage", "server_errors"), ("lose-pending", "lost_writes")],
)
def test_a_service_wrong_on_purpose_fails_the_verdict(
    tmp_path: Path, broken: str, caught: str
) -> None:
    """The same experiment that passes against the service fails against a build
    whose outage path answers 500, or one that loses the writes it accepted."""
    done, report = chaos(tmp_path, *_local(tmp_path, "latency-injector", "--broken", broken))
    assert done.returncode == 1, done.stdout
    assert report["verdict"] == "failed"
    assert report["invariants"][caught], report["invariants"]
    assert any(d.startswith(caught) for d in report["deviations"])
    assert f"latency-injector: FAILED: {caught}" in done.stdout


async def test_ctrl_c_rolls_the_fault_back_and_removes_the_stack(tmp_path: Path) -> None:
    """SIGINT in the middle of cpu-hog: the hogs are killed, the service stopped, its
    database dropped, the report says aborted, and the exit status is 130."""
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "service", "chaos", "run", "cpu-hog", "--local"]
    command += ["--folder", str(tmp_path / "runs"), "--duration", "600", "--warmup", "1"]
    command += ["--report", str(report), "--postgres-url", ADMIN_URL, "--redis-url", REDIS_URL]
    process = await trio.lowlevel.open_process(
        command,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
    )
    said = ""
    assert process.stdout is not None
    with trio.fail_after(BOUND_S):
        async for chunk in process.stdout:
            said += chunk.decode()
            if "cpu_hogs_started" in said:
                break
        process.send_signal(signal.SIGINT)
        async for chunk in process.stdout:
            said += chunk.decode()
        status = await process.wait()
    print(said)
    assert status == 130
    assert json.loads(report.read_text())["verdict"] == "aborted"
    hogs = said.split("cpu_hogs_started pids=[", 1)[1].split("]", 1)[0]
    assert [_state(int(pid)) for pid in hogs.split(", ")] == ["gone"] * len(hogs.split(", "))
    run = said.split("/runs/run-", 1)[1].split("/", 1)[0]
    left = await _databases(ADMIN_URL, f"lomash_chaos_{run}")
    assert left == []


def _state(pid: int) -> str:
    """A process's state letter, or "gone" (a zombie, reaped by nobody, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
    return "gone" if state == "Z" else state


async def _databases(url: str, name: str) -> list[str]:
    import trio_asyncio

    async with trio_asyncio.open_loop():
        rows = await fetch(url, "SELECT datname FROM pg_database WHERE datname = $1", name)
    return [r[0] for r in rows]


async def test_pod_killer_runs_against_a_running_target(
    environment: dict[str, str], tmp_path: Path
) -> None:
    """``--target URL``: the service someone started (two workers, the demo seed); the
    experiment finds its workers from the listening socket and kills them."""
    env = {**environment, "LOMASH_AUTH_RATE_LIMITS_ENABLED": "false"}
    async with service(
        env, "--workers", "2", "--seed", ready_event="workers_listening", test_routes=False
    ) as running:
        arguments = ["pod-killer", "--target", running.url, "--showroom", "leeds"]
        arguments += ["--rate", "2", "--duration", "6", "--warmup", "2", "--recovery", "20"]
        done, report = await trio.to_thread.run_sync(chaos, tmp_path, *arguments)
    assert done.returncode == 0, done.stdout
    assert report["verdict"] == "passed"
    assert report["target"] == running.url
    assert [k["serving_s"] is not None for k in report["measurements"]["kills"]] == [True, True]
