"""The load test's users and shape (locust), run by bench/load.py in a process of its own.

    python -m bench.locustfile --url URL --out FILE [shape and think-time flags]

Importing locust monkey-patches the process for gevent: nothing else runs here. Each
simulated visitor mostly reads (``GET /v1/showrooms``, ``GET /v1/products``, a week
of ``GET /v1/appointments/availability``) and sometimes books: a week of availability
in a random showroom and category, some days ahead, then ``POST /v1/appointments`` on
a random free slot of it with a fresh ``Idempotency-Key`` and a customer of its own
(e-mail and phone unique: the per-customer booking cap never applies). Every request
is recorded (its kind, the shape's phase when it started, its latency, its outcome)
and written to ``--out`` as JSON when the shape ends; bench/load.py reports and checks.

Outcomes: ``ok`` (a read's 200), ``booked`` (201), ``accepted`` (202: Postgres was
down), ``slot_taken`` (409: another visitor got the slot first, an expected answer
under contention); anything else is an error, named by its status and error code or
by its exception.

The locust CLI can run it too (``locust -f bench/locustfile.py --headless --host
URL``): the default shape, locust's own statistics, nothing written.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from locust import FastHttpUser, LoadTestShape, between, events, task
from locust.env import Environment

__all__ = ["Phase", "Shape", "Visitor"]

READ_KINDS = ("showrooms", "products", "availability")
BOOKING = "booking"
CATEGORIES = ("KITCHEN", "BEDROOM")
# How many weeks a visitor looks at before giving up on finding a free slot.
LOOKS = 3


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    seconds: float
    users: int
    spawn_rate: float


def phases(
    users: int,
    burst_users: int,
    warmup_s: float,
    steady_s: float,
    burst_s: float,
    recovery_s: float,
) -> list[Phase]:
    """Warm-up (a ramp to ``users``), ``users`` steady, a burst to ``burst_users`` (all
    at once), back to ``users``. A phase of 0 s is left out."""
    every = [
        Phase("warmup", warmup_s, users, max(users / max(warmup_s, 1.0), 1.0)),
        Phase("steady", steady_s, users, float(users)),
        Phase("burst", burst_s, burst_users, float(burst_users)),
        Phase("recovery", recovery_s, users, float(burst_users)),
    ]
    return [phase for phase in every if phase.seconds > 0]


class Shape(LoadTestShape):
    """The phases one after another; None (the end) after the last."""

    plan: list[Phase] = phases(15, 80, 10, 30, 20, 20)

    # The clock is kept here (LoadTestShape's is the same, untyped): perf_counter for
    # the phases, and the wall clock the start was at, for the requests' start times.
    def __init__(self) -> None:
        self.reset_time()

    def reset_time(self) -> None:
        self.start_time = time.perf_counter()
        self.started_epoch = time.time()

    def get_run_time(self) -> float:
        return time.perf_counter() - self.start_time

    def phase_at(self, seconds: float) -> str:
        end = 0.0
        for phase in self.plan:
            end += phase.seconds
            if seconds < end:
                return phase.name
        return self.plan[-1].name  # answered after the end: started in the last phase

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        end = 0.0
        for phase in self.plan:
            end += phase.seconds
            if elapsed < end:
                return phase.users, phase.spawn_rate
        return None


class Recorder:
    """Every request's latency by phase and kind, and its outcomes' counts."""

    def __init__(self) -> None:
        self.shape: Shape | None = None
        self.latencies: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.outcomes: dict[str, dict[str, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(int))
        )
        self.samples: list[str] = []  # a few error answers, to show what went wrong

    def record(self, kind: str, started: float, ms: float, outcome: str, detail: str) -> None:
        shape = self.shape
        phase = "run" if shape is None else shape.phase_at(started - shape.started_epoch)
        self.latencies[phase][kind].append(ms)
        self.outcomes[phase][kind][outcome] += 1
        sample = f"{kind}: {outcome}: "
        if (
            detail
            and len(self.samples) < 10
            and not any(s.startswith(sample) for s in self.samples)
        ):
            self.samples.append(sample + detail)  # one per kind and outcome

    def as_json(self) -> dict[str, Any]:
        return {
            "latencies_ms": self.latencies,
            "outcomes": self.outcomes,
            "samples": self.samples,
        }


RECORDER = Recorder()


def outcome(kind: str, response: Any, exception: BaseException | None) -> tuple[str, str]:
    """(outcome, a sample of the answer when it is an error, else "")."""
    status = int(getattr(response, "status_code", 0) or 0)
    if status == 0:
        name = type(exception).__name__ if exception is not None else "no answer"
        return f"error {name}", str(exception)[:200]
    if kind == BOOKING and status in (201, 202, 409):
        code = _error_code(response) if status == 409 else None
        if status == 201:
            return "booked", ""
        if status == 202:
            return "accepted", ""
        if code == "slot_taken":
            return "slot_taken", ""
        return f"error 409 {code}", _text(response)
    if kind != BOOKING and status == 200:
        return "ok", ""
    code = _error_code(response)
    return (f"error {status} {code}" if code else f"error {status}"), _text(response)


def _text(response: Any) -> str:
    try:
        return str(response.text)[:300]
    except Exception:  # an unreadable body: the status says enough
        return ""


def _error_code(response: Any) -> str | None:
    try:
        body = json.loads(response.content)
        code = body["error"]["code"]
    except (ValueError, TypeError, KeyError):
        return None
    return str(code)


def _on_request(
    request_type: str,
    name: str,
    response_time: float,
    response_length: int,
    response: Any,
    context: Any,
    exception: BaseException | None,
    start_time: float | None = None,
    **_: Any,
) -> None:
    verdict, detail = outcome(name, response, exception)
    started = time.time() - response_time / 1000 if start_time is None else start_time
    RECORDER.record(name, started, float(response_time), verdict, detail)


events.request.add_listener(_on_request)  # type: ignore[no-untyped-call]


class Visitor(FastHttpUser):
    """A visitor: reads the showrooms, products and availability; sometimes books."""

    wait_time = between(0.2, 1.0)
    connection_timeout = 10.0
    network_timeout = 10.0
    days_ahead = 150  # bookings go to a week starting 1 to this many days from today

    def on_start(self) -> None:
        self.showroom_ids: list[str] = []
        self._showrooms()

    def _showrooms(self) -> None:
        response = self.client.get("/v1/showrooms", name="showrooms")
        if response.status_code == 200:
            self.showroom_ids = [s["id"] for s in response.json()["showrooms"]]

    @task(3)
    def showrooms(self) -> None:
        self._showrooms()

    @task(3)
    def products(self) -> None:
        self.client.get("/v1/products", name="products")

    def _week(self, showroom_id: str, category: str, first: date | None) -> list[dict[str, Any]]:
        params = {"type": "SHOWROOM", "showroom_id": showroom_id, "category": category}
        if first is not None:
            params["from"] = first.isoformat()
        response = self.client.get(
            "/v1/appointments/availability", name="availability", params=params
        )
        if response.status_code != 200:
            return []
        slots: list[dict[str, Any]] = response.json()["slots"]
        return slots

    @task(2)
    def availability(self) -> None:
        if self.showroom_ids:
            self._week(random.choice(self.showroom_ids), "KITCHEN", None)

    @task(2)
    def book(self) -> None:
        if not self.showroom_ids:
            return
        for _ in range(LOOKS):
            showroom_id = random.choice(self.showroom_ids)
            category = random.choice(CATEGORIES)
            first = date.today() + timedelta(days=random.randint(1, self.days_ahead))
            slots = self._week(showroom_id, category, first)
            if slots:
                break
        else:
            return
        slot = random.choice(slots)
        tag = uuid.uuid4().hex
        body = {
            "type": "SHOWROOM",
            "category": category,
            "start": slot["start"],
            "showroom_id": showroom_id,
            "consultant_id": slot["consultant_id"],
            "customer": {
                "name": "Load Test",
                "email": f"load-{tag}@lomashwood.invalid",
                "phone": f"+44 7{secrets.randbelow(10**9):09d}",
                "postcode": "LS1 6HD",
            },
            "notes": "load test",
        }
        self.client.post(
            "/v1/appointments",
            name=BOOKING,
            json=body,
            headers={"Idempotency-Key": f"load-{tag}"},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="The load test's locust run (bench/load.py)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--users", type=int, default=15)
    parser.add_argument("--burst-users", type=int, default=80)
    parser.add_argument("--warmup-s", type=float, default=10)
    parser.add_argument("--steady-s", type=float, default=30)
    parser.add_argument("--burst-s", type=float, default=20)
    parser.add_argument("--recovery-s", type=float, default=20)
    parser.add_argument("--wait-min-s", type=float, default=0.2)
    parser.add_argument("--wait-max-s", type=float, default=1.0)
    parser.add_argument("--days-ahead", type=int, default=150)
    args = parser.parse_args()
    plan = phases(
        args.users, args.burst_users, args.warmup_s, args.steady_s, args.burst_s, args.recovery_s
    )
    Shape.plan = plan
    Visitor.wait_time = between(args.wait_min_s, args.wait_max_s)
    Visitor.days_ahead = args.days_ahead
    shape = Shape()
    RECORDER.shape = shape
    environment = Environment(
        user_classes=[Visitor], shape_class=shape, host=args.url.rstrip("/"), events=events
    )
    runner = environment.create_local_runner()
    total_s = sum(phase.seconds for phase in plan)
    runner.start_shape()
    worker = runner.shape_greenlet
    assert worker is not None
    worker.join(timeout=total_s + 30)
    timed_out = not worker.dead
    runner.quit()
    result = {
        "phases": [
            {"name": p.name, "seconds": p.seconds, "users": p.users, "spawn_rate": p.spawn_rate}
            for p in plan
        ],
        "timed_out": timed_out,
        "cpu_warning": bool(runner.cpu_warning_emitted),
        **RECORDER.as_json(),
    }
    with open(args.out, "w") as out:
        json.dump(result, out)
    sys.exit(1 if timed_out else 0)


if __name__ == "__main__":
    main()
