"""The fail-fast benchmark's load (bench/slow.py): booking requests, each for a slot of
its own with an Idempotency-Key of its own, sent by a number of clients (httpx, a thread
each) until a phase has enough answers, or its bound; an ``Answer`` each, a ``Phase``
in all.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.booking_data import CONSULTANTS, Slots
from bench.booking_load import percentile

REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # 0: no answer (timeout, connection error)
    latency_s: float
    at: float  # time.monotonic() when it came
    retry_after: bool
    error: str = ""  # no answer: why; an answer neither 201, 202 nor 503: its start


@dataclass(slots=True)
class Phase:
    answers: list[Answer] = field(default_factory=list)
    bounded: bool = False  # stopped at its time (or count) bound, not done
    exited: int | None = None  # the service's exit status, if it exited meanwhile

    @property
    def statuses(self) -> Counter[int]:
        return Counter(answer.status for answer in self.answers)

    def quantile_ms(self, q: float) -> float | None:
        """Of the requests answered (None if none was)."""
        ordered = sorted(round(a.latency_s * 1e6) for a in self.answers if a.status)
        return percentile(ordered, q) / 1000 if ordered else None


class Bookings:
    """Booking requests, each for a slot no other asks for (bench/booking_data.py's
    numbering) with an Idempotency-Key of its own."""

    def __init__(self, url: str, slots: Slots, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.process = process
        self._slots = slots
        self._tag = os.urandom(4).hex()
        self._next = slots.next
        self._lock = threading.Lock()

    def _take(self) -> int:
        with self._lock:
            slot = self._next
            self._next += 1
        if slot >= self._slots.total:
            raise SystemExit("no slots left inside the booking horizon: use fewer --requests")
        return slot

    def body(self, slot: int) -> dict[str, Any]:
        start = datetime.fromtimestamp(self._slots.base + slot // CONSULTANTS * 3600, UTC)
        return {
            "type": "ONLINE",
            "category": "KITCHEN",
            "start": start.isoformat(),
            "consultant_id": f"bench-c{slot % CONSULTANTS:02d}",
            # A customer per request: the per-customer booking cap is not what is measured.
            "customer": {
                "name": "Ada Lovelace",
                "email": f"ada-{self._tag}-{slot}@example.com",
                "phone": f"+44 7{slot % 1_000_000_000:09d}",
                "postcode": "SW1A 1AA",
            },
            "notes": "bench",
        }

    def book(self, client: httpx.Client, timeout_s: float) -> Answer:
        slot = self._take()
        headers = {"Idempotency-Key": f"{self._tag}-{slot}"}
        started = time.monotonic()
        try:
            response = client.post(
                self.url, json=self.body(slot), headers=headers, timeout=timeout_s
            )
        except httpx.HTTPError as error:
            now = time.monotonic()
            return Answer(0, now - started, now, False, type(error).__name__)
        now = time.monotonic()
        status = response.status_code
        sample = "" if status in (201, 202, 503) else " ".join(response.text.split())[:200]
        return Answer(status, now - started, now, "retry-after" in response.headers, sample)


def drive(
    bookings: Bookings,
    *,
    clients: int,
    count: int,
    bound_s: float,
    done: Callable[[list[Answer]], bool] | None = None,
    pause_s: float = 0.0,
) -> Phase:
    """Book with ``clients`` clients until ``count`` answers or ``done(answers)``, at
    most ``bound_s``; an answer still due at the bound counts as no answer."""
    phase = Phase()
    deadline = time.monotonic() + bound_s
    lock = threading.Lock()
    finished = threading.Event()
    met = threading.Event()  # the goal was reached (not the bound, not an exit)

    def client_loop() -> None:
        with httpx.Client() as client:
            while not finished.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                answer = bookings.book(client, min(left, REQUEST_TIMEOUT_S))
                with lock:
                    phase.answers.append(answer)  # in flight at the end: still counted
                    if finished.is_set():
                        return
                    if len(phase.answers) >= count or (done is not None and done(phase.answers)):
                        met.set()
                        finished.set()
                    elif answer.status == 0 and bookings.process.poll() is not None:
                        phase.exited = bookings.process.returncode
                        finished.set()
                if pause_s:
                    finished.wait(pause_s)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.bounded = not met.is_set() and phase.exited is None
    return phase


def fails_fast(latency_s: float, window: int) -> Callable[[list[Answer]], bool]:
    """Whether the last ``window`` answers came in less than ``latency_s``, as 202 or 503."""

    def check(answers: list[Answer]) -> bool:
        last = answers[-window:]
        return len(last) == window and all(
            a.status in (202, 503) and a.latency_s < latency_s for a in last
        )

    return check
