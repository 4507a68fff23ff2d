"""The steady load of a chaos experiment, and the invariants it proves afterwards.

While an experiment runs, ``Load``:

- books distinct slots (taken from availability before the fault) at a steady rate,
  each with its own Idempotency-Key and customer; every ``rival_every``-th slot is
  booked at the same moment by a rival with another key (the double-booking probe);
- retries like a well-behaved client: a booking that got no answer (connection reset,
  a killed worker, a timeout) or a 503/429 with ``Retry-After`` is sent again, same
  key and body, until ``patience_s`` runs out;
- places orders (``orders_per_s``, when given products and the service has Stripe),
  retried the same way;
- reads showrooms, products and availability in a few reader loops;
- reads ``/health`` every ``health_every_s`` (what it said, and when).

Every exchange is an ``Attempt``; every booking answered 201/202 is ``Accepted``.
``settle`` then reads each accepted booking back with its manage token until it is
CONFIRMED or CANCELLED (the pending ones are replayed once Postgres answers), and each
placed order, and ``violations`` names what broke the invariants:

- lost: an accepted booking that is gone, still PENDING after the settle window, or
  CANCELLED without a reason; an order answered 201 that is gone or changed;
- doubled: two CONFIRMED bookings of one slot;
- server errors: any 5xx but a 503 carrying ``Retry-After`` (``/health``'s own 503
  is its verdict, checked separately by the experiments);
- unexpected answers: a 4xx other than 409 ``slot_taken`` and 429/503 refusals.

Concurrency is bounded (``max_in_flight``): a stalled service makes the load wait, it
never piles up unbounded tasks or sockets.
"""

from __future__ import annotations

import itertools
import math
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import trio

__all__ = [
    "Accepted",
    "Attempt",
    "HealthSample",
    "Load",
    "LoadOptions",
    "Slot",
    "discover_slots",
    "quantile_ms",
]

READS = (
    "/v1/showrooms",
    "/v1/products",
    "/v1/appointments/availability",
)
SETTLED = frozenset({"CONFIRMED", "CANCELLED"})


@dataclass(frozen=True, slots=True)
class Slot:
    start: str
    consultant_id: str
    showroom_id: str


@dataclass(frozen=True, slots=True)
class Attempt:
    kind: str  # "book", "rival", "read", "order"
    at_s: float  # since the load began
    status: int | None  # None: no answer (connection error, timeout)
    ms: float
    retry_after: bool = False
    code: str | None = None  # the error code of a 4xx/5xx body
    error: str | None = None  # why there was no answer


@dataclass(slots=True)
class Accepted:
    id: str
    manage_token: str
    slot: Slot
    first_status: str  # CONFIRMED or PENDING
    at_s: float
    final: str | None = None  # after settle: CONFIRMED / CANCELLED / None (not found)
    reason: str | None = None


@dataclass(slots=True)
class PlacedOrder:
    id: str
    manage_token: str
    total_pence: int
    at_s: float
    kept: bool | None = None  # after settle: read back with the same total


@dataclass(frozen=True, slots=True)
class HealthSample:
    at_s: float
    http_status: int | None
    status: str | None  # healthy / degraded / unhealthy / None (no answer)
    checks: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoadOptions:
    bookings_per_s: float = 8.0
    readers: int = 2
    read_pause_s: float = 0.05
    rival_every: int = 5
    patience_s: float = 25.0
    request_timeout_s: float = 5.0
    health_every_s: float = 0.25
    max_in_flight: int = 64
    settle_s: float = 60.0
    orders_per_s: float = 0.0  # orders placed beside the bookings (needs Stripe)


def _answer(attempt: Attempt) -> str:
    if attempt.status is None:
        return f"no answer ({attempt.error})"
    return f"{attempt.status} {attempt.code}" if attempt.code else str(attempt.status)


def quantile_ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 1)


async def discover_slots(
    client: httpx.AsyncClient, showroom: str, wanted: int, *, days_ahead: int = 2
) -> list[Slot]:
    """At least ``wanted`` free slots of ``showroom`` (days from ``days_ahead`` on),
    shuffled across consultants so neighbours in the list rarely share a minute."""
    found: list[Slot] = []
    day = datetime.now(UTC).date() + timedelta(days=days_ahead)
    for _ in range(60):
        if len(found) >= wanted:
            break
        answer = await client.get(
            "/v1/appointments/availability",
            params={
                "type": "SHOWROOM",
                "showroom_id": showroom,
                "category": "KITCHEN",
                "from": day.isoformat(),
                "to": (day + timedelta(days=6)).isoformat(),
            },
        )
        answer.raise_for_status()
        found += [
            Slot(s["start"], s["consultant_id"], s["showroom_id"]) for s in answer.json()["slots"]
        ]
        day += timedelta(days=7)
    if len(found) < wanted:
        raise RuntimeError(f"only {len(found)} free slots in {showroom!r}, the load needs {wanted}")
    return found[:wanted]


class Load:
    def __init__(
        self,
        client: httpx.AsyncClient,
        slots: list[Slot],
        options: LoadOptions,
        products: Sequence[str] = (),
    ) -> None:
        self.client = client
        self.options = options
        self.attempts: list[Attempt] = []
        self.accepted: list[Accepted] = []
        self.health: list[HealthSample] = []
        self.orders: list[PlacedOrder] = []
        self._products = list(products)
        self.started = trio.current_time()
        self._slots = iter(slots)
        self._customers = itertools.count()
        self._limit = trio.CapacityLimiter(options.max_in_flight)
        self._random = random.Random(7)
        self.slots_used = 0
        self.retried_after_no_answer = 0  # bookings that got no answer, then one
        self._nursery: trio.Nursery | None = None

    @property
    def ordering(self) -> bool:
        """Whether this load places orders (a rate, and products to order)."""
        return self.options.orders_per_s > 0 and bool(self._products)

    def now_s(self) -> float:
        return round(trio.current_time() - self.started, 3)

    async def run(self) -> None:
        """Until cancelled: the bookers, the readers and the health watcher."""
        self.started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._book_steadily)
            nursery.start_soon(self._watch_health)
            if self.ordering:
                nursery.start_soon(self._order_steadily)
            for _ in range(self.options.readers):
                nursery.start_soon(self._read)

    # -- bookings -----------------------------------------------------------------

    async def _book_steadily(self) -> None:
        every_s = 1.0 / self.options.bookings_per_s
        async with trio.open_nursery() as bookings:
            self._nursery = bookings
            for n in itertools.count():
                if not await self._start_booking(rivalled=n % self.options.rival_every == 0):
                    await trio.sleep_forever()  # out of slots: reads go on
                await trio.sleep(every_s)

    async def _start_booking(self, *, rivalled: bool) -> bool:
        slot = next(self._slots, None)
        if slot is None or self._nursery is None:
            return False
        self.slots_used += 1
        await self._limit.acquire_on_behalf_of(slot)
        self._nursery.start_soon(self._book_slot, slot, rivalled)
        return True

    async def burst(self, count: int) -> None:
        """``count`` more bookings at once, beside the steady ones (in flight when a
        fault strikes: the clients that must retry)."""
        for _ in range(count):
            if not await self._start_booking(rivalled=False):
                return

    async def _book_slot(self, slot: Slot, rivalled: bool) -> None:
        try:
            async with trio.open_nursery() as both:
                both.start_soon(self._book, slot, "book")
                if rivalled:
                    both.start_soon(self._book, slot, "rival")
        finally:
            self._limit.release_on_behalf_of(slot)

    def _customer(self) -> dict[str, str]:
        n = next(self._customers)
        return {
            "name": f"Chaos Customer {n}",
            "email": f"chaos-{n}-{uuid.uuid4().hex[:8]}@lomashwood.invalid",
            "phone": f"+44 7{uuid.uuid4().int % 10**9:09d}",  # the cap counts digits
            "postcode": "LS1 6HD",
        }

    async def _send(
        self, kind: str, path: str, body: dict[str, Any]
    ) -> tuple[Attempt, httpx.Response] | None:
        """POST ``body`` with an Idempotency-Key of its own, sent again (same key, same
        body) while it gets no answer or a refusal with Retry-After, for up to
        ``patience_s``; the last answer (None: out of patience without one)."""
        key = f"chaos-{uuid.uuid4()}"
        give_up = trio.current_time() + self.options.patience_s
        pause_s = 0.1
        unanswered = False
        while True:
            attempt, answer = await self._exchange(
                kind, "POST", path, json=body, headers={"Idempotency-Key": key}
            )
            unanswered = unanswered or attempt.status is None
            if unanswered and answer is not None:
                self.retried_after_no_answer += 1
                unanswered = False
            refused = attempt.status is None or (
                attempt.status in (429, 503) and attempt.retry_after
            )
            if answer is not None and not refused:
                return attempt, answer  # answered for good (201/202, 409 slot_taken, ...)
            if trio.current_time() + pause_s > give_up:
                return (attempt, answer) if answer is not None else None
            if answer is not None and attempt.retry_after:
                pause_s = max(pause_s, min(float(answer.headers["Retry-After"] or 1), 2.0))
            await trio.sleep(pause_s * (0.5 + self._random.random()))
            pause_s = min(pause_s * 2, 2.0)

    async def _book(self, slot: Slot, kind: str) -> None:
        body = {
            "type": "SHOWROOM",
            "category": "KITCHEN",
            "start": slot.start,
            "showroom_id": slot.showroom_id,
            "consultant_id": slot.consultant_id,
            "customer": self._customer(),
            "notes": "chaos experiment",
        }
        sent = await self._send(kind, "/v1/appointments", body)
        if sent is not None and sent[0].status in (201, 202):
            attempt, answer = sent
            data = answer.json()
            self.accepted.append(
                Accepted(data["id"], data["manage_token"], slot, data["status"], attempt.at_s)
            )

    # -- orders -------------------------------------------------------------------

    async def _order_steadily(self) -> None:
        async with trio.open_nursery() as orders:
            for n in itertools.count():
                await self._limit.acquire_on_behalf_of(("order", n))
                orders.start_soon(self._order, n)
                await trio.sleep(1.0 / self.options.orders_per_s)

    async def _order(self, n: int) -> None:
        try:
            chosen = self._random.sample(self._products, min(2, len(self._products)))
            items = [{"product_id": p, "quantity": self._random.randint(1, 3)} for p in chosen]
            sent = await self._send(
                "order", "/v1/orders", {"items": items, "customer": self._customer()}
            )
            if sent is not None and sent[0].status == 201:
                attempt, answer = sent
                data = answer.json()
                self.orders.append(
                    PlacedOrder(data["id"], data["manage_token"], data["total_pence"], attempt.at_s)
                )
        finally:
            self._limit.release_on_behalf_of(("order", n))

    # -- reads and health ---------------------------------------------------------

    async def _read(self) -> None:
        showroom = None
        while True:
            path = self._random.choice(READS)
            params: dict[str, str] = {}
            if path.endswith("availability"):
                if showroom is None:
                    await trio.sleep(self.options.read_pause_s)
                    continue
                params = {"type": "SHOWROOM", "showroom_id": showroom, "category": "KITCHEN"}
            _, answer = await self._exchange("read", "GET", path, params=params)
            if (
                showroom is None
                and answer is not None
                and path == "/v1/showrooms"
                and answer.status_code == 200
                and (rooms := answer.json()["showrooms"])
            ):
                showroom = rooms[0]["id"]
            await trio.sleep(self.options.read_pause_s)

    async def _watch_health(self) -> None:
        while True:
            at_s = self.now_s()
            try:
                answer = await self.client.get("/health", timeout=2.0)
                data = answer.json()
                sample = HealthSample(at_s, answer.status_code, data.get("status"), data["checks"])
            except (httpx.HTTPError, ValueError, KeyError):
                sample = HealthSample(at_s, None, None)
            self.health.append(sample)
            await trio.sleep(self.options.health_every_s)

    async def _exchange(
        self, kind: str, method: str, path: str, **options: Any
    ) -> tuple[Attempt, httpx.Response | None]:
        at_s = self.now_s()
        began = trio.current_time()
        try:
            answer = await self.client.request(
                method, path, timeout=self.options.request_timeout_s, **options
            )
        except httpx.HTTPError as error:
            ms = (trio.current_time() - began) * 1000
            attempt = Attempt(kind, at_s, None, ms, error=type(error).__name__)
            self.attempts.append(attempt)
            return attempt, None
        ms = (trio.current_time() - began) * 1000
        code = None
        if answer.status_code >= 400:
            try:
                code = answer.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = None
        attempt = Attempt(kind, at_s, answer.status_code, ms, "Retry-After" in answer.headers, code)
        self.attempts.append(attempt)
        return attempt, answer

    # -- afterwards -----------------------------------------------------------------

    async def settle(self) -> None:
        """Read every accepted booking back until it is settled (or the window ends)."""
        limit = trio.CapacityLimiter(16)
        deadline = trio.current_time() + self.options.settle_s

        async def one(booking: Accepted) -> None:
            async with limit:
                while trio.current_time() < deadline:
                    try:
                        answer = await self.client.get(
                            f"/v1/appointments/{booking.id}",
                            headers={"X-Manage-Token": booking.manage_token},
                            timeout=self.options.request_timeout_s,
                        )
                    except httpx.HTTPError:
                        answer = None
                    if answer is not None and answer.status_code == 200:
                        data = answer.json()
                        if data["status"] in SETTLED:
                            booking.final = data["status"]
                            booking.reason = data.get("status_reason")
                            return
                    elif answer is not None and answer.status_code == 404:
                        return  # gone: lost
                    await trio.sleep(0.5)

        async def order(placed: PlacedOrder) -> None:
            async with limit:
                while trio.current_time() < deadline:
                    try:
                        answer = await self.client.get(
                            f"/v1/orders/{placed.id}",
                            headers={"X-Manage-Token": placed.manage_token},
                            timeout=self.options.request_timeout_s,
                        )
                    except httpx.HTTPError:
                        answer = None
                    if answer is not None and answer.status_code in (200, 404):
                        placed.kept = (
                            answer.status_code == 200
                            and answer.json()["total_pence"] == placed.total_pence
                        )
                        return
                    await trio.sleep(0.5)

        async with trio.open_nursery() as nursery:
            for booking in self.accepted:
                nursery.start_soon(one, booking)
            for placed in self.orders:
                nursery.start_soon(order, placed)

    def violations(self) -> dict[str, list[str]]:
        """Every broken invariant, named with the evidence (empty lists: none)."""
        lost = [
            f"{b.id} ({b.first_status} at {b.at_s} s) ended {b.final or 'unsettled/gone'}"
            for b in self.accepted
            if b.final is None or (b.final == "CANCELLED" and not b.reason)
        ]
        confirmed = Counter(b.slot for b in self.accepted if b.final == "CONFIRMED")
        doubled = [
            f"{slot.consultant_id} at {slot.start}: {n} CONFIRMED"
            for slot, n in confirmed.items()
            if n > 1
        ]
        server_errors = [
            f"{a.kind} at {a.at_s} s: {a.status} {a.code or ''}".strip()
            for a in self.attempts
            if a.status is not None and a.status >= 500 and not (a.status == 503 and a.retry_after)
        ]
        unexpected = [
            f"{a.kind} at {a.at_s} s: {a.status} {a.code}"
            for a in self.attempts
            if a.status is not None
            and 400 <= a.status < 500
            and not (a.status == 409 and a.code == "slot_taken")
            and not (a.status in (429, 503) and a.retry_after)
        ]
        lost += [
            f"order {o.id} (201 at {o.at_s} s): {'changed' if o.kept is False else 'unread'}"
            for o in self.orders
            if not o.kept
        ]
        return {
            "lost_writes": lost,
            "double_bookings": doubled,
            "server_errors": server_errors[:50],
            "unexpected_answers": unexpected[:50],
        }

    def summary(self, since_s: float = 0.0, until_s: float = math.inf) -> dict[str, Any]:
        """Answers by kind and status, and latency, of the attempts in a window."""
        window = [a for a in self.attempts if since_s <= a.at_s < until_s]
        out: dict[str, Any] = {}
        for kind in sorted({a.kind for a in window}):
            mine = [a for a in window if a.kind == kind]
            answered = [a.ms for a in mine if a.status is not None]
            out[kind] = {
                "attempts": len(mine),
                "statuses": dict(sorted(Counter(_answer(a) for a in mine).items())),
                "p50_ms": quantile_ms(answered, 0.5),
                "p95_ms": quantile_ms(answered, 0.95),
                "p99_ms": quantile_ms(answered, 0.99),
            }
        return out

    def outcomes(self) -> dict[str, int]:
        finals = Counter(b.final or "unsettled" for b in self.accepted)
        return {
            "orders_placed": len(self.orders),
            "orders_kept": sum(bool(o.kept) for o in self.orders),
            "slots_booked_at": self.slots_used,
            "answered_after_retrying_no_answer": self.retried_after_no_answer,
            "accepted": len(self.accepted),
            "accepted_pending": sum(b.first_status == "PENDING" for b in self.accepted),
            **{f"ended_{k.lower()}": v for k, v in sorted(finals.items())},
        }
