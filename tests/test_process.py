"""`lomash serve` as a real process: SIGTERM drains, a second signal exits at once.

No outcome here hangs on a duration being long enough. The tests wait on the
process's own signals (``test_sleep_started``: a slow request is in flight;
``shutdown_started``; the listener refusing connections) under a generous bound.
A request that must be cut, or must still be running when a second signal comes,
sleeps for an hour (``ENDLESS_S``): it cannot end by itself. A request that must
finish inside a drain is checked afterwards in the process's own log order (every
``shutdown_started`` before its ``request`` line): a run in which the requests ended
before the steps were done could not tell, and is repeated with longer requests
(``SLOW_S``), never passed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from config import HttpDriver

REPO = Path(__file__).resolve().parent.parent
DRAIN_S = 6.0  # the services' drain budget unless a test sets its own
BOUND_S = 40.0
LONG_DRAIN_S = 29.0  # the longest drain budget the settings allow (below ECS's 30 s)
SLOW_S = (2.0, 4.0, 8.0)  # a slow request; a run too slow to tell repeats with the next
ENDLESS_S = 3600.0  # a request that cannot end by itself within any test's bound


class Logs:
    """JSON log lines of a process, readable while it runs."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self._changed = trio.Event()
        self.ended = trio.Event()  # the stream closed: every line is in

    async def read(self, stream: trio.abc.ReceiveStream) -> None:
        try:
            await self._read(stream)
        finally:
            self.ended.set()

    async def _read(self, stream: trio.abc.ReceiveStream) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    self.lines.append({"event": "raw", "text": line.decode(errors="replace")})
            self._changed.set()
            self._changed = trio.Event()

    def named(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == event]

    async def wait_for(self, event: str, count: int = 1) -> list[dict[str, Any]]:
        while len(found := self.named(event)) < count:
            await self._changed.wait()
        return found


class Service:
    def __init__(self, process: trio.Process, logs: Logs) -> None:
        self.process = process
        self.logs = logs
        self.url = ""

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)


@asynccontextmanager
async def service(
    environment: dict[str, str],
    *arguments: str,
    ready_event: str = "http_listening",
    test_routes: bool = True,
    tree: Path | None = None,
    module: str | None = None,
) -> AsyncIterator[Service]:
    """``lomash serve`` as a process (with the tests' routes unless ``test_routes`` is
    false: then exactly the service as shipped). ``tree``: the code of another release
    (an exported git tree), run as ``module`` with its own packages first on the path
    and none of this process's LOMASH_* variables (it may not know their names).
    A process that exits before it is ready fails the test at once."""
    inherited = dict(os.environ)
    if tree is not None:
        inherited = {k: v for k, v in inherited.items() if not k.startswith("LOMASH_")}
        inherited["PYTHONPATH"] = str(tree)
    env = {**inherited, **environment}
    env.update(LOMASH_LOG_FORMAT="json")
    env.setdefault("LOMASH_DRAIN_TIMEOUT_S", str(DRAIN_S))
    module = module or ("tests._launcher" if test_routes else "service")
    command = [sys.executable, "-m", module, "serve", "--port", "0", *arguments]
    process = await trio.lowlevel.open_process(
        command, cwd=tree or REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    logs = Logs()
    try:
        async with trio.open_nursery() as nursery:
            assert process.stderr is not None
            nursery.start_soon(logs.read, process.stderr)
            running = Service(process, logs)
            with trio.fail_after(BOUND_S):
                async with trio.open_nursery() as waiting:

                    async def exited() -> None:
                        status = await process.wait()
                        await logs.ended.wait()
                        if not logs.named(ready_event):
                            pytest.fail(f"{module} serve exited {status} before {ready_event}")

                    waiting.start_soon(exited)
                    ready = (await logs.wait_for(ready_event))[0]
                    waiting.cancel_scope.cancel()
            running.url = ready["url"] if "url" in ready else ready["urls"][0]
            yield running
            nursery.cancel_scope.cancel()
    except BaseException:
        # Shown by pytest with the failure: what the process(es) said.
        for line in logs.lines[-60:]:
            print(json.dumps(line))
        raise
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.fixture
def environment(migrated_url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    return {
        "LOMASH_DATABASE_URL": migrated_url,
        "LOMASH_REDIS_URL": redis_url,
        "LOMASH_REDIS_PREFIX": redis_prefix,
    }


@pytest.fixture(params=[driver.value for driver in HttpDriver])
def driver_environment(
    request: pytest.FixtureRequest, environment: dict[str, str]
) -> dict[str, str]:
    """The environment once per HTTP driver (LOMASH_HTTP_DRIVER): the edge and drain
    tests hold for each."""
    return {**environment, "LOMASH_HTTP_DRIVER": request.param}


async def slow_request(client: httpx.AsyncClient, url: str, seconds: float, out: list[int]) -> None:
    response = await client.get(f"{url}/_test/sleep", params={"seconds": seconds})
    out.append(response.status_code)


async def refused(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as fresh:
            await fresh.get(f"{url}/health/live")
    except httpx.ConnectError:
        return True
    return False


def finished_after_shutdown_began(logs: Logs, requests: int, shutdowns: int) -> bool:
    """The process's own log order: every one of ``shutdowns`` processes logged
    ``shutdown_started`` before any of the ``requests`` slow requests logged its end."""
    events = [(line.get("event"), line.get("path")) for line in logs.lines]
    began = [i for i, (event, _) in enumerate(events) if event == "shutdown_started"]
    ended = [i for i, event in enumerate(events) if event == ("request", "/_test/sleep")]
    return len(began) == shutdowns and len(ended) == requests and max(began) < min(ended)


async def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0(
    driver_environment: dict[str, str],
) -> None:
    """Slow requests in flight at SIGTERM all get 200, new connections are refused, exit 0."""
    environment = {**driver_environment, "LOMASH_DRAIN_TIMEOUT_S": str(LONG_DRAIN_S)}
    for seconds in SLOW_S:
        statuses: list[int] = []
        async with service(environment) as running, httpx.AsyncClient(timeout=BOUND_S) as client:
            with trio.fail_after(BOUND_S):
                async with trio.open_nursery() as requests:
                    for _ in range(5):
                        requests.start_soon(slow_request, client, running.url, seconds, statuses)
                    await running.logs.wait_for("test_sleep_started", 5)  # all in flight
                    signalled_at = trio.current_time()
                    running.signal()
                    await running.logs.wait_for("shutdown_started")
                    while True:  # the listener closes as soon as the signal is handled
                        if await refused(running.url):
                            break
                        await trio.sleep(0.02)
                    answered_before_refusal = list(statuses)
                status = await running.process.wait()
                elapsed = trio.current_time() - signalled_at
        # Decided only if the slow requests outlasted the steps above (else: longer ones).
        if not answered_before_refusal and finished_after_shutdown_began(running.logs, 5, 1):
            break
    else:
        pytest.fail(f"requests of {SLOW_S} s all ended before the listener was seen closed")
    assert statuses == [200] * 5
    assert status == 0
    assert elapsed < LONG_DRAIN_S  # the drain ended with the requests, not at its budget
    assert running.logs.named("shutdown_complete")
    assert not running.logs.named("shutdown_deadline_exceeded")
    stopped = [line["child"] for line in running.logs.named("child_stopped")]
    assert stopped[-3:] == ["domain", "redis", "postgres"]
    assert stopped.index("http") < stopped.index("postgres")


async def test_requests_longer_than_the_drain_budget_are_cut_and_the_process_still_exits(
    driver_environment: dict[str, str],
) -> None:
    """A request that would outlive any test (1 h) is cut at drain_timeout_s; exit 0."""
    environment = {**driver_environment, "LOMASH_DRAIN_TIMEOUT_S": "1"}
    statuses: list[object] = []
    async with service(environment) as running, httpx.AsyncClient(timeout=BOUND_S) as client:
        with trio.fail_after(BOUND_S):
            async with trio.open_nursery() as requests:
                requests.start_soon(_expect_dropped, client, running.url, statuses)
                await running.logs.wait_for("test_sleep_started")
                running.signal()
                status = await running.process.wait()
    assert status == 0
    assert statuses == ["dropped"]
    assert running.logs.named("shutdown_complete")
    assert not [line for line in running.logs.named("request") if line.get("status") == 200]


async def _expect_dropped(client: httpx.AsyncClient, url: str, out: list[object]) -> None:
    try:
        response = await client.get(f"{url}/_test/sleep", params={"seconds": ENDLESS_S})
        out.append(response.status_code)
    except httpx.HTTPError:
        out.append("dropped")


async def test_a_second_signal_exits_at_once(driver_environment: dict[str, str]) -> None:
    """A second SIGTERM mid-drain exits 1 by the forced path, not by the drain's end."""
    environment = {**driver_environment, "LOMASH_DRAIN_TIMEOUT_S": str(LONG_DRAIN_S)}
    statuses: list[object] = []
    async with (
        service(environment) as running,
        httpx.AsyncClient(timeout=BOUND_S) as client,
        trio.open_nursery() as requests,
    ):
        requests.start_soon(_expect_dropped, client, running.url, statuses)
        with trio.fail_after(BOUND_S):
            await running.logs.wait_for("test_sleep_started")
            running.signal()
            await running.logs.wait_for("shutdown_started")
            running.signal()
            status = await running.process.wait()
    assert status == 1
    assert running.logs.named("shutdown_forced")
    assert not running.logs.named("shutdown_complete")  # the drain never ended
    assert not running.logs.named("shutdown_deadline_exceeded")
    assert statuses == ["dropped"]


async def test_workers_share_the_port_and_each_drains_on_sigterm(
    driver_environment: dict[str, str],
) -> None:
    """--workers 2: both serve one port; SIGTERM to the parent drains both; exit 0."""
    environment = {**driver_environment, "LOMASH_DRAIN_TIMEOUT_S": str(LONG_DRAIN_S)}
    for seconds in SLOW_S:
        statuses: list[int] = []
        async with (
            service(environment, "--workers", "2", ready_event="workers_listening") as running,
            httpx.AsyncClient(timeout=BOUND_S) as client,
        ):
            with trio.fail_after(BOUND_S):
                await running.logs.wait_for("http_listening", 2)
                async with trio.open_nursery() as requests:
                    for _ in range(6):
                        requests.start_soon(slow_request, client, running.url, seconds, statuses)
                    await running.logs.wait_for("test_sleep_started", 6)  # all in flight
                    running.signal()
                    await running.logs.wait_for("shutdown_started", 3)  # the parent and 2 workers
                status = await running.process.wait()
        # Decided only if the requests were still running when both workers began to drain.
        if finished_after_shutdown_began(running.logs, 6, 3):
            break
    else:
        pytest.fail(f"requests of {SLOW_S} s all ended before the workers began to drain")
    assert statuses == [200] * 6
    assert status == 0
    assert not running.logs.named("shutdown_forced")
    pids = {line.get("pid") for line in running.logs.named("worker_started")}
    assert len(pids) == 2
    assert len(running.logs.named("worker_exited")) == 2


def test_invalid_configuration_stops_the_start_with_one_line() -> None:
    """LOMASH_PORT=eighty: exit 2 and one line naming the variable, nothing else."""
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve"],
        cwd=REPO,
        env={**os.environ, "LOMASH_PORT": "eighty"},
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: LOMASH_PORT: expected an integer, got 'eighty'"
    ]


async def test_the_service_as_shipped_has_no_test_routes(environment: dict[str, str]) -> None:
    """`python -m service serve` (not the tests' launcher): /_test/... is a 404."""
    async with (
        service(environment, test_routes=False) as running,
        httpx.AsyncClient(timeout=BOUND_S) as client,
    ):
        with trio.fail_after(BOUND_S):
            for path in ("/_test/sleep", "/_test/crash"):
                answer = await client.get(f"{running.url}{path}")
                assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found")


def test_fatal_errors_say_what_happened_in_one_line(environment: dict[str, str]) -> None:
    """A taken port / an unknown dead job: exit 1 and one line naming it, no nursery dump."""
    env = {**os.environ, **environment, "LOMASH_LOG_FORMAT": "json"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = subprocess.run(
            [sys.executable, "-m", "service", "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=BOUND_S,
            check=False,
        )
    shown = subprocess.run(
        [sys.executable, "-m", "service", "dlq", "show", "bookings", "no-such-job"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        check=False,
    )
    for result in (served, shown):
        assert result.returncode == 1
        assert "Exceptions from Trio nursery" not in result.stderr
        assert "Traceback" not in result.stderr
    said = [line for line in served.stderr.splitlines() if line.startswith("error: ")]
    assert said == [
        f"error: 127.0.0.1:{port} is already in use: another process listens there"
        " (--port, LOMASH_PORT)"
    ]
    said = [line for line in shown.stderr.splitlines() if line.startswith("error: ")]
    assert said == ["error: no dead job 'no-such-job' in queue 'bookings'"]


async def test_a_worker_past_its_memory_limit_is_drained_and_replaced(
    environment: dict[str, str],
) -> None:
    """--workers 2 with LOMASH_WORKER_MEMORY_LIMIT_MB: a worker made to grow past it is
    told to drain (SIGTERM), exits 0 and a fresh one takes its place; the service
    answers throughout."""
    limited = {
        **environment,
        "LOMASH_WORKERS": "2",
        "LOMASH_WORKER_MEMORY_LIMIT_MB": "600",
        "LOMASH_WORKER_MEMORY_CHECK_S": "0.2",
    }
    async with service(limited) as running:
        await running.logs.wait_for("worker_started", 2)
        async with httpx.AsyncClient(base_url=running.url, timeout=BOUND_S) as client:
            grown = await client.post("/_test/grow", params={"mb": "700"})
            with trio.fail_after(BOUND_S):
                [exceeded] = await running.logs.wait_for("worker_memory_exceeded")
                await running.logs.wait_for("worker_started", 3)
            answers = [await client.get("/health/live") for _ in range(20)]
        exits = [e for e in running.logs.named("worker_exited") if e["pid"] == exceeded["pid"]]
        started = running.logs.named("worker_started")
    assert grown.status_code == 200
    assert exceeded["resident_mb"] > 600
    assert exits == [{**exits[0], "status": 0}]  # drained, not killed
    assert len({e["pid"] for e in started}) == 3
    assert [a.status_code for a in answers] == [200] * 20


async def test_a_worker_that_keeps_dying_backs_off_then_the_parent_gives_up(
    environment: dict[str, str],
) -> None:
    """--workers 2, worker 1 SIGKILLed again and again: each restart waits longer (0,
    then 0.2 s, then 0.4 s, +-20 %), and past the restart budget (3 within 30 s) the
    parent stops instead of spinning: exit status 1, for the orchestrator to replace
    the task. No restart storm."""
    storm = {
        **environment,
        "LOMASH_WORKERS": "2",
        "LOMASH_RESTART_MAX_RESTARTS": "3",
        "LOMASH_RESTART_BACKOFF_MIN_S": "0.2",
    }
    async with service(storm) as running:
        await running.logs.wait_for("worker_started", 2)

        def newest_worker_1() -> int:
            pids = [e["pid"] for e in running.logs.named("worker_started") if e["worker"] == 1]
            return int(pids[-1])

        for n in range(3):
            os.kill(newest_worker_1(), signal.SIGKILL)
            with trio.fail_after(BOUND_S):
                await running.logs.wait_for("worker_started", 3 + n)
        os.kill(newest_worker_1(), signal.SIGKILL)  # the 4th crash: over the budget
        with trio.fail_after(BOUND_S):
            status = await running.process.wait()
        restarts = [
            e for e in running.logs.named("child_restarted") if e["supervisor"] == "workers"
        ]
        gave_up = [
            e for e in running.logs.named("supervisor_escalated") if e["supervisor"] == "workers"
        ]
    delays = [e["delay_s"] for e in restarts]
    assert len(delays) == 3
    assert delays[0] == 0.0
    assert 0.16 <= delays[1] <= 0.24
    assert 0.32 <= delays[2] <= 0.48
    assert gave_up
    assert status == 1
