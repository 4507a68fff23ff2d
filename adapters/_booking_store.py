"""The booking domain's store of record: the ``BookingStore`` Protocol and its
Postgres implementation.

Two implementations pass one contract suite (tests/booking_store_contract.py):
``PostgresBookingStore`` (each method one ``Database.run``: one bridge hop, one
transaction, the SQL in adapters/_appointments.py) and ``MemoryBookingStore``
(adapters/_booking_store_memory.py, for virtual-time simulations of the actors).

Every write takes the outbox job(s) its caller decided on (``OutboxJob``) and commits
them with the change; the store decides nothing of the domain's: not what is
notified, not what a pending booking that lost its slot becomes. Failures are the
adapter's errors: ``ConnectionLost`` / ``OperationTimeout`` (Postgres is away),
``Contention`` (a deadlock: nothing was written, the caller may try again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from adapters._appointments import (
    appointments_of,
    book_batch,
    booked_between,
    cancel,
    fetch_appointment,
    record_lost,
    reschedule,
    write_replayed,
)
from adapters._booking_records import (
    Appointment,
    BatchOutcome,
    NewBooking,
    Render,
    Replayed,
    ScheduleRows,
    SlotTaken,
)
from adapters._booking_upkeep import load_schedule_rows, trim_idempotency_keys
from adapters._outbox import OutboxJob
from adapters._postgres import Database

__all__ = ["BookingStore", "PostgresBookingStore"]


class BookingStore(Protocol):
    async def book(
        self,
        batch: Sequence[NewBooking],
        render: Render,
        notice: Callable[[NewBooking], OutboxJob],
        *,
        max_active_per_customer: int,
    ) -> list[BatchOutcome]:
        """Book ``batch`` (distinct idempotency keys) at once; outcomes in order.

        A key seen before is ``KeyReplay``; a customer past ``max_active_per_customer``
        active future bookings is ``LimitReached`` (not stored under the key); else each
        booking gets its first free candidate (``Booked``) or ``SlotTaken``, its answer
        ``render``-ed and stored under its key, and ``notice(booking)`` for each booked."""
        ...

    async def fetch(self, appointment_id: str) -> Appointment | None: ...

    async def of_account(self, account_id: str, limit: int) -> list[Appointment]:
        """The account's appointments, the latest start first (at most ``limit``)."""
        ...

    async def cancel(
        self, appointment_id: str, reason: str, notice: OutboxJob
    ) -> Appointment | None:
        """Cancel an active appointment (``notice`` only if this cancelled it); the
        appointment as it is now, None if there is none."""
        ...

    async def reschedule(
        self,
        appointment_id: str,
        candidates: Sequence[str],
        start: datetime,
        end: datetime,
        notice: OutboxJob,
    ) -> Appointment | SlotTaken | None:
        """Move an active appointment to the first free candidate at ``start``
        (``notice`` if it moved); unchanged if it is not active."""
        ...

    async def booked_between(self, first: datetime, last: datetime) -> set[tuple[str, datetime]]:
        """(consultant id, start) of the active appointments overlapping [first, last)."""
        ...

    async def write_replayed(
        self,
        booking: NewBooking,
        consultant_id: str,
        status: int,
        response: str,
        notice: OutboxJob,
    ) -> Replayed:
        """Write a pending booking as CONFIRMED with its answer: ``Booked``;
        ``SlotTaken`` (nothing written); or the existing appointment's status."""
        ...

    async def record_lost(
        self, booking: NewBooking, consultant_id: str, reason: str, notice: OutboxJob
    ) -> str:
        """Write a booking that could not be kept as CANCELLED with ``reason``; the
        appointment's status (an existing one is left as it is)."""
        ...

    async def schedule_rows(self) -> ScheduleRows: ...

    async def forget_keys(self, older_than_s: float) -> int:
        """Forget idempotency keys older than ``older_than_s``; how many."""
        ...


class PostgresBookingStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def book(
        self,
        batch: Sequence[NewBooking],
        render: Render,
        notice: Callable[[NewBooking], OutboxJob],
        *,
        max_active_per_customer: int,
    ) -> list[BatchOutcome]:
        operation = book_batch(
            batch, render, notice, max_active_per_customer=max_active_per_customer
        )
        return await self._database.run(operation)

    async def fetch(self, appointment_id: str) -> Appointment | None:
        # Not from the replica (a booking just made may not be there yet).
        return await self._database.run(fetch_appointment(appointment_id), idempotent=True)

    async def of_account(self, account_id: str, limit: int) -> list[Appointment]:
        return await self._database.run(appointments_of(account_id, limit), idempotent=True)

    async def cancel(
        self, appointment_id: str, reason: str, notice: OutboxJob
    ) -> Appointment | None:
        return await self._database.run(cancel(appointment_id, reason, notice))

    async def reschedule(
        self,
        appointment_id: str,
        candidates: Sequence[str],
        start: datetime,
        end: datetime,
        notice: OutboxJob,
    ) -> Appointment | SlotTaken | None:
        return await self._database.run(reschedule(appointment_id, candidates, start, end, notice))

    async def booked_between(self, first: datetime, last: datetime) -> set[tuple[str, datetime]]:
        return await self._database.run(booked_between(first, last), readonly=True)

    async def write_replayed(
        self,
        booking: NewBooking,
        consultant_id: str,
        status: int,
        response: str,
        notice: OutboxJob,
    ) -> Replayed:
        return await self._database.run(
            write_replayed(booking, consultant_id, status, response, notice)
        )

    async def record_lost(
        self, booking: NewBooking, consultant_id: str, reason: str, notice: OutboxJob
    ) -> str:
        return await self._database.run(record_lost(booking, consultant_id, reason, notice))

    async def schedule_rows(self) -> ScheduleRows:
        return await self._database.run(load_schedule_rows(), readonly=True)

    async def forget_keys(self, older_than_s: float) -> int:
        return await self._database.run(trim_idempotency_keys(older_than_s))
