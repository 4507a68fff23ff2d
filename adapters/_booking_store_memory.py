"""``BookingStore`` in memory: the twin the domain actors run on in virtual-time
simulations. It passes the same contract suite as ``PostgresBookingStore``
(tests/booking_store_contract.py): idempotency keys, the no-double-booking rule of the
EXCLUDE constraint, the per-customer cap, the outbox.

``down`` makes every call fail as Postgres does when it is unreachable; ``outbox``
holds the jobs written, in order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import trio

from adapters._booking_records import (
    Appointment,
    BatchOutcome,
    Booked,
    KeyReplay,
    LimitReached,
    NewBooking,
    Render,
    Replayed,
    ScheduleRows,
    SlotTaken,
)
from adapters._outbox import OutboxJob
from supervisors import ConnectionLost

__all__ = ["MemoryBookingStore"]

_ACTIVE = ("PENDING", "CONFIRMED", "RESCHEDULED")


@dataclass(slots=True)
class _Key:
    request_hash: bytes
    status: int
    response: str
    created_at: datetime


class MemoryBookingStore:
    def __init__(
        self,
        schedule: ScheduleRows | None = None,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._schedule = schedule or ScheduleRows()
        self._now = now
        self._appointments: dict[str, Appointment] = {}
        self._keys: dict[str, _Key] = {}
        self.outbox: list[OutboxJob] = []
        self.down = False

    async def _enter(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise ConnectionLost("postgres is unreachable", dependency="postgres")

    def _add_job(self, job: OutboxJob) -> None:
        if all(j.job_id != job.job_id for j in self.outbox):
            self.outbox.append(job)

    def _free(self, consultant_id: str, start: datetime, end: datetime, *, but: str = "") -> bool:
        return not any(
            a.consultant_id == consultant_id
            and a.status in _ACTIVE
            and a.start < end
            and start < a.end
            and a.id != but
            for a in self._appointments.values()
        )

    def _customer(self, email: str, phone: str) -> tuple[str, str]:
        return email.lower(), "".join(c for c in phone if c.isdigit())

    def _active_of(self, key: tuple[int, str]) -> int:
        now = self._now()
        return sum(
            1
            for a in self._appointments.values()
            if a.status in _ACTIVE
            and a.start > now
            and self._customer(a.customer_email, a.customer_phone)[key[0]] == key[1]
        )

    async def book(
        self,
        batch: Sequence[NewBooking],
        render: Render,
        notice: Callable[[NewBooking], OutboxJob],
        *,
        max_active_per_customer: int,
    ) -> list[BatchOutcome]:
        await self._enter()
        outcomes: dict[str, BatchOutcome] = {}
        todo: list[NewBooking] = []
        for b in batch:
            known = self._keys.get(b.idempotency_key)
            if known is not None:
                outcomes[b.idempotency_key] = KeyReplay(
                    known.request_hash, known.status, known.response
                )
            else:
                todo.append(b)
        counts: dict[tuple[int, str], int] = {}
        counted: set[tuple[tuple[int, str], datetime]] = set()
        for b in todo:
            keys = [
                (i, part)
                for i, part in enumerate(self._customer(b.customer_email, b.customer_phone))
            ]
            for k in keys:
                counts.setdefault(k, self._active_of(k))
            fresh = [k for k in keys if (k, b.start) not in counted]
            if any(counts[k] >= max_active_per_customer for k in fresh):
                outcomes[b.idempotency_key] = LimitReached()
                continue
            for k in fresh:
                counts[k] += 1
                counted.add((k, b.start))
            outcome: Booked | SlotTaken = SlotTaken()
            for consultant_id in b.candidates:
                if self._free(consultant_id, b.start, b.end):
                    self._appointments[b.id] = b.as_appointment(consultant_id, "CONFIRMED")
                    outcome = Booked(consultant_id)
                    break
            status, response = render(b, outcome)
            self._keys[b.idempotency_key] = _Key(b.request_hash, status, response, self._now())
            outcomes[b.idempotency_key] = outcome
            if isinstance(outcome, Booked):
                self._add_job(notice(b))
        return [outcomes[b.idempotency_key] for b in batch]

    async def fetch(self, appointment_id: str) -> Appointment | None:
        await self._enter()
        return self._appointments.get(appointment_id)

    async def of_account(self, account_id: str, limit: int) -> list[Appointment]:
        await self._enter()
        mine = [a for a in self._appointments.values() if a.account_id == account_id]
        return sorted(mine, key=lambda a: (a.start, a.id), reverse=True)[:limit]

    async def cancel(
        self, appointment_id: str, reason: str, notice: OutboxJob
    ) -> Appointment | None:
        await self._enter()
        current = self._appointments.get(appointment_id)
        if current is not None and current.status in _ACTIVE:
            current = dataclasses.replace(current, status="CANCELLED", status_reason=reason)
            self._appointments[appointment_id] = current
            self._add_job(notice)
        return current

    async def reschedule(
        self,
        appointment_id: str,
        candidates: Sequence[str],
        start: datetime,
        end: datetime,
        notice: OutboxJob,
    ) -> Appointment | SlotTaken | None:
        await self._enter()
        current = self._appointments.get(appointment_id)
        if current is None or current.status not in ("CONFIRMED", "RESCHEDULED"):
            return current
        for consultant_id in candidates:
            if self._free(consultant_id, start, end, but=appointment_id):
                moved = dataclasses.replace(
                    current,
                    consultant_id=consultant_id,
                    start=start,
                    end=end,
                    status="RESCHEDULED",
                    previous_start=current.start,
                )
                self._appointments[appointment_id] = moved
                self._add_job(notice)
                return moved
        return SlotTaken()

    async def booked_between(self, first: datetime, last: datetime) -> set[tuple[str, datetime]]:
        await self._enter()
        return {
            (a.consultant_id, a.start)
            for a in self._appointments.values()
            if a.status in _ACTIVE and a.start < last and a.end > first
        }

    async def write_replayed(
        self,
        booking: NewBooking,
        consultant_id: str,
        status: int,
        response: str,
        notice: OutboxJob,
    ) -> Replayed:
        await self._enter()
        existing = self._appointments.get(booking.id)
        if existing is not None:
            return existing.status
        self._keys.setdefault(
            booking.idempotency_key, _Key(booking.request_hash, status, response, self._now())
        )
        if not self._free(consultant_id, booking.start, booking.end):
            return SlotTaken()
        self._appointments[booking.id] = booking.as_appointment(consultant_id, "CONFIRMED")
        self._add_job(notice)
        return Booked(consultant_id)

    async def record_lost(
        self, booking: NewBooking, consultant_id: str, reason: str, notice: OutboxJob
    ) -> str:
        await self._enter()
        existing = self._appointments.get(booking.id)
        if existing is not None:
            return existing.status
        lost = booking.as_appointment(consultant_id, "CANCELLED")
        self._appointments[booking.id] = dataclasses.replace(lost, status_reason=reason)
        self._add_job(notice)
        return "CANCELLED"

    async def schedule_rows(self) -> ScheduleRows:
        await self._enter()
        return self._schedule

    async def forget_keys(self, older_than_s: float) -> int:
        await self._enter()
        now = self._now()
        old = [
            k for k, v in self._keys.items() if (now - v.created_at).total_seconds() > older_than_s
        ]
        for k in old:
            del self._keys[k]
        return len(old)
