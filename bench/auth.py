"""Accounts benchmark: login, an authenticated read, a rate-limited route; ours vs a
FastAPI peer doing the same checks (bench/peers/fastapi_auth.py), side by side.

    python -m bench.auth [--seconds 8] [--connections 50]

One throwaway database with one account (registered through our API), both services
on it and on the same Redis, one worker each. Scenarios, each driven by wrk:

- ``login``: ``POST /v1/auth/login`` with the right password. argon2id is the cost by
  design: the report gives one verify's time in this process and the ceiling it puts
  on logins/s (``hash_concurrency`` threads). Fewer connections (``--login-connections``).
- ``me``: ``GET /v1/me`` with an access token: signature, expiry and the session's key
  in Redis (or the memory of it), against the floors of bench.http in the same run.
- ``refresh``: ``POST /v1/auth/refresh`` with a well-formed token nobody issued: the
  rate-limit decision (per address and per account, one GCRA script) and the rotation
  script, then 401 (every answer must be a 401: non-2xx is what this run expects).

Rate limits are on, with limits so high that every decision is made and allowed.
Prints req/s, p50, p99, the server's CPU per request (from /proc), and ratios ours /
peer. Exit 1 if a run is invalid (a 5xx, an unexpected status, a socket error, a
busy machine); 2 without wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from argon2 import PasswordHasher, Type

from bench.booking_data import delete_redis_keys
from bench.http import (
    FLOOR,
    LEAN_FLOOR,
    REDIS_URL,
    Running,
    bench_database,
    server,
    uvicorn_command,
)
from bench.proc import cpu_seconds, machine_busy
from config import AuthSettings

EMAIL, PASSWORD = "customer@example.com", "a sound bench passphrase"
BUSY = 0.25
HUGE = "1000000/1s"
_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True, slots=True)
class Run:
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    cpu_ms: float  # the server's CPU per request


def wrk(
    running: Running,
    path: str,
    seconds: int,
    connections: int,
    *,
    body: dict[str, str] | None = None,
    header: str | None = None,
) -> Run:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if body is not None:
            script.write(
                'wrk.method = "POST"\n'
                f"wrk.body = {json.dumps(json.dumps(body))}\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
            )
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    command += ["-s", script.name]
    if header is not None:
        command += ["-H", header]
    before = cpu_seconds(running.process.pid)
    try:
        output = subprocess.run(
            [*command, running.url(path)], capture_output=True, text=True, check=True
        ).stdout
    finally:
        Path(script.name).unlink()
    cpu = cpu_seconds(running.process.pid) - before
    total = int(re.search(r"(\d+) requests in", output)[1])  # type: ignore[index]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
    latency = {q: float(v) * _UNITS[u] for q, v, u in _LATENCY.findall(output)}
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return Run(
        requests=total,
        requests_per_s=rate,
        p50_ms=latency.get("50", 0.0),
        p99_ms=latency.get("99", 0.0),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket.groups()) if socket else 0,
        cpu_ms=1000 * cpu / max(1, total),
    )


def argon2_verify_ms(settings: AuthSettings, rounds: int = 15) -> float:
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        type=Type.ID,
    )
    stored = hasher.hash(PASSWORD)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        hasher.verify(stored, PASSWORD)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description="Accounts benchmark vs a FastAPI peer")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--login-connections", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        sys.exit(2)
    settings = AuthSettings()
    verify_ms = argon2_verify_ms(settings)
    prefix = f"lomash_bench:{os.urandom(4).hex()}:"
    busy = machine_busy(1.0)
    results: dict[tuple[str, str], Run] = {}
    problems: list[str] = []
    try:
        with bench_database() as url:
            limits = {
                f"LOMASH_AUTH_RATE_LIMITS_{name}": HUGE
                for name in ("LOGIN_IP", "LOGIN_ACCOUNT", "REFRESH_IP", "REFRESH_ACCOUNT")
            }
            ours_env = {
                "LOMASH_DATABASE_URL": url,
                "LOMASH_REDIS_URL": REDIS_URL,
                "LOMASH_REDIS_PREFIX": f"{prefix}ours:",
                "LOMASH_LOG_LEVEL": "warning",
                "LOMASH_JOBS_QUEUES": "",
                **limits,
            }
            ours_cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1"]
            peer_cmd = uvicorn_command("bench.peers.fastapi_auth:app")
            peer_env = {
                "DATABASE_URL": url,
                "REDIS_URL": REDIS_URL,
                "REDIS_PREFIX": f"{prefix}peer:",
            }
            with (
                server([*ours_cmd, "--port", "0"], ours_env) as ours,
                server(peer_cmd, peer_env) as peer,
            ):
                created = httpx.post(
                    ours.url("/v1/auth/register"),
                    json={"email": EMAIL, "password": PASSWORD, "name": "Bench"},
                )
                if created.status_code != 201:
                    sys.exit(f"could not register the bench account: {created.text}")
                login_body = {"email": EMAIL, "password": PASSWORD}
                unknown = {"refresh_token": f"{uuid.uuid4()}.nobody-issued-this"}
                for name, running in (("ours", ours), ("peer", peer)):
                    answer = httpx.post(running.url("/v1/auth/login"), json=login_body)
                    if answer.status_code != 200:
                        sys.exit(f"{name}: login failed: {answer.text}")
                    header = f"Authorization: Bearer {answer.json()['access_token']}"
                    refused = httpx.post(running.url("/v1/auth/refresh"), json=unknown)
                    if refused.status_code != 401:
                        problems.append(f"{name} refresh: {refused.status_code}, not 401")
                    scenarios = {
                        "login": ("/v1/auth/login", login_body, None, args.login_connections),
                        "me": ("/v1/me", None, header, args.connections),
                        "refresh": ("/v1/auth/refresh", unknown, None, args.connections),
                    }
                    for scenario, (path, body, auth, connections) in scenarios.items():
                        wrk(running, path, 2, connections, body=body, header=auth)  # warm-up
                        results[(scenario, name)] = wrk(
                            running, path, args.seconds, connections, body=body, header=auth
                        )
            # The floors, same run: the bare app on hypercorn's trio worker and on ours.
            for name, command in (("floor", FLOOR), ("lean", LEAN_FLOOR)):
                with server(command, {}) as bare:
                    wrk(bare, "/", 2, args.connections)  # warm-up
                    results[("floor", name)] = wrk(bare, "/", args.seconds, args.connections)
    finally:
        delete_redis_keys(prefix)

    print(
        f"Accounts benchmark: {args.seconds}s per run, {args.connections} connections "
        f"({args.login_connections} for login), 1 worker each, wrk on loopback, 2 cores"
    )
    print(
        f"argon2id verify (m={settings.argon2_memory_kib} KiB, t={settings.argon2_time_cost}, "
        f"p={settings.argon2_parallelism}): {verify_ms:.1f} ms here; "
        f"{settings.hash_concurrency} at once -> at most "
        f"{1000 * settings.hash_concurrency / verify_ms:.0f} logins/s on these cores"
    )
    print(
        f"{'scenario':<9} {'impl':<5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'CPU ms/req':>10} {'non-2xx':>8}"
    )
    for scenario in ("login", "me", "refresh"):
        for name in ("ours", "peer"):
            r = results[(scenario, name)]
            print(
                f"{scenario:<9} {name:<5} {r.requests_per_s:>8.0f} {r.p50_ms:>8.2f} "
                f"{r.p99_ms:>8.2f} {r.cpu_ms:>10.2f} {r.non_2xx:>8}"
            )
            if scenario != "refresh" and r.non_2xx:
                problems.append(f"{name} {scenario}: {r.non_2xx} non-2xx answers")
            if scenario == "refresh" and r.non_2xx < r.requests:
                problems.append(f"{name} refresh: {r.requests - r.non_2xx} answers were not 401")
            if r.socket_errors:
                problems.append(f"{name} {scenario}: {r.socket_errors} socket errors")
        ours_run, peer_run = results[(scenario, "ours")], results[(scenario, "peer")]
        throughput = ours_run.requests_per_s / peer_run.requests_per_s
        cpu = ours_run.cpu_ms / peer_run.cpu_ms
        print(
            f"{scenario:<9} ratio ours/peer: throughput {throughput:.2f}x, "
            f"CPU per request {cpu:.2f}x"
        )
    me = results[("me", "ours")].requests_per_s
    floor, lean = results[("floor", "floor")], results[("floor", "lean")]
    print(
        f"floors: hypercorn {floor.requests_per_s:.0f} req/s, lean {lean.requests_per_s:.0f}; "
        f"me ours/floor {me / floor.requests_per_s:.2f}x, "
        f"ours/lean floor {me / lean.requests_per_s:.2f}x"
    )
    print(f"The machine was {busy:.0%} busy before the first run.")
    if busy > BUSY:
        problems.append(f"machine was {busy:.0%} busy before the runs: numbers are unreliable")
    if problems:
        for problem in problems:
            print(f"!!! {problem}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
