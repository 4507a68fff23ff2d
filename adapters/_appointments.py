"""Appointments in Postgres: group-committed bookings, reads, cancel, reschedule, replay.

Every function here returns an *operation* (``adapters._postgres.Operation``): one
``Database.run`` call, one bridge hop, one transaction. ``book_batch`` books many
requests in that one transaction with set-based statements (``unnest``), which is
what lets the SlotBooker group-commit under load:

1. ``INSERT INTO idempotency_keys ... ON CONFLICT DO NOTHING RETURNING key``: a key
   that exists already (or is being written by a concurrent transaction, which this
   waits for) is a retry; its stored response is returned.
2. ``INSERT INTO appointments ... ON CONFLICT DO NOTHING RETURNING id``: the
   ``EXCLUDE USING gist`` constraint turns a double booking into "nothing inserted",
   also between rows of the same statement. A request whose consultant was taken
   tries its next candidate in the next round.
3. The response of every new key is stored (``UPDATE ... FROM unnest``) and the
   caller's job for every booking made (its notice) goes to the outbox, in the same
   transaction.

What to notify and what a lost pending booking becomes are the actors' decisions:
these operations take the notices they are given and write what they are told.

Rows are inserted in a sorted order so that two concurrent batches wait on each
other in one direction only; a deadlock (``Contention``) rolls everything back and
the caller may run the operation again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from adapters._booking_records import (
    Appointment,
    BatchOutcome,
    Booked,
    KeyReplay,
    LimitReached,
    NewBooking,
    Render,
    Replayed,
    SlotTaken,
)
from adapters._customer_cap import within_the_cap
from adapters._outbox import OutboxJob, add_many_to_outbox
from adapters._postgres import Connection, Operation

__all__ = [
    "appointments_of",
    "book_batch",
    "booked_between",
    "cancel",
    "fetch_appointment",
    "record_lost",
    "reschedule",
    "write_replayed",
]


_INSERT_KEYS = """
INSERT INTO idempotency_keys (key, request_hash, status, response)
SELECT k, h, 0, '' FROM unnest($1::text[], $2::bytea[]) AS u(k, h) ORDER BY k
ON CONFLICT DO NOTHING RETURNING key
"""
_EXISTING_KEYS = (
    "SELECT key, request_hash, status, response FROM idempotency_keys WHERE key = ANY($1::text[])"
)
_STORE_RESPONSES = """
UPDATE idempotency_keys AS k SET status = u.status, response = u.response
FROM unnest($1::text[], $2::int[], $3::text[]) AS u(key, status, response)
WHERE k.key = u.key
"""
_COLUMNS = """id, reference, type, category, status, consultant_id, showroom_id, starts_at,
ends_at, customer_name, customer_email, customer_phone, customer_postcode, customer_address,
notes, manage_token_hash, account_id"""
_INSERT_APPOINTMENTS = f"""
INSERT INTO appointments ({_COLUMNS})
SELECT * FROM unnest(
    $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::text[],
    $14::text[], $15::text[], $16::bytea[], $17::uuid[]
)
ON CONFLICT DO NOTHING RETURNING id::text
"""
_SELECT_APPOINTMENT = f"""
SELECT id::text, {_COLUMNS.split(", ", 1)[1].replace("account_id", "account_id::text")},
status_reason, previous_starts_at
FROM appointments WHERE id = $1
"""
_BOOKED_BETWEEN = """
SELECT consultant_id, starts_at FROM appointments
WHERE status IN ('PENDING', 'CONFIRMED', 'RESCHEDULED') AND starts_at < $2 AND ends_at > $1
"""


def book_batch(
    batch: Sequence[NewBooking],
    render: Render,
    notice: Callable[[NewBooking], OutboxJob],
    *,
    max_active_per_customer: int,
) -> Operation[list[BatchOutcome]]:
    """Book ``batch`` (distinct idempotency keys) in one transaction; outcomes in order.

    ``render`` makes the stored response of a new key's outcome (status, JSON text);
    it runs inside the transaction, so it must not block; so does ``notice``, the job
    written to the outbox for each booking made. A customer (by e-mail, or
    by phone digits) never ends the transaction with more than
    ``max_active_per_customer`` active future bookings: this batch's bookings past the
    cap are ``LimitReached`` and never inserted (a slot is not taken from anyone by a
    booking that is then refused).
    """

    async def operation(connection: Connection) -> list[BatchOutcome]:
        outcomes: dict[str, BatchOutcome] = {}
        async with connection.transaction():
            keys = [b.idempotency_key for b in batch]
            new = {
                row[0]
                for row in await connection.fetch(
                    _INSERT_KEYS, keys, [b.request_hash for b in batch]
                )
            }
            if len(new) < len(batch):
                for row in await connection.fetch(
                    _EXISTING_KEYS, [k for k in keys if k not in new]
                ):
                    outcomes[row[0]] = KeyReplay(bytes(row[1]), row[2], row[3])
            todo = [b for b in batch if b.idempotency_key in new]
            todo, over = await within_the_cap(connection, todo, max_active_per_customer)
            for b in over:
                outcomes[b.idempotency_key] = LimitReached()
            booked = await _insert_rounds(connection, todo)
            stored: list[tuple[str, int, str]] = []
            notices: list[OutboxJob] = []
            for b in todo:
                outcome: Booked | SlotTaken = booked.get(b.id, SlotTaken())
                outcomes[b.idempotency_key] = outcome
                stored.append((b.idempotency_key, *render(b, outcome)))
                if isinstance(outcome, Booked):
                    notices.append(notice(b))
            if stored:
                await connection.execute(_STORE_RESPONSES, *map(list, zip(*stored, strict=True)))
            await add_many_to_outbox(connection, notices)
        return [outcomes[b.idempotency_key] for b in batch]

    return operation


async def _insert_rounds(connection: Connection, todo: Sequence[NewBooking]) -> dict[str, Booked]:
    """Insert each booking with its first candidate, the ones refused with their next..."""
    booked: dict[str, Booked] = {}
    turn = 0
    waiting = [b for b in todo if b.candidates]
    while waiting:
        attempt = sorted(waiting, key=lambda b: (b.candidates[turn], b.start, b.id))
        rows = [_row(b, b.candidates[turn], "CONFIRMED") for b in attempt]
        inserted = {r[0] for r in await connection.fetch(_INSERT_APPOINTMENTS, *_columns(rows))}
        for b in attempt:
            if b.id in inserted:
                booked[b.id] = Booked(b.candidates[turn])
        turn += 1
        waiting = [b for b in attempt if b.id not in inserted and turn < len(b.candidates)]
    return booked


def _row(b: NewBooking, consultant_id: str, status: str) -> tuple[Any, ...]:
    return (
        b.id,
        b.reference,
        b.kind,
        b.category,
        status,
        consultant_id,
        b.showroom_id,
        b.start,
        b.end,
        b.customer_name,
        b.customer_email,
        b.customer_phone,
        b.customer_postcode,
        b.customer_address,
        b.notes,
        b.token_hash,
        b.account_id,
    )


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


def fetch_appointment(appointment_id: str) -> Operation[Appointment | None]:
    async def operation(connection: Connection) -> Appointment | None:
        row = await connection.fetchrow(_SELECT_APPOINTMENT, appointment_id)
        return None if row is None else _appointment(row)

    return operation


_OF_ACCOUNT = (
    _SELECT_APPOINTMENT.replace("WHERE id = $1", "WHERE account_id = $1")
    + " ORDER BY starts_at DESC, id LIMIT $2"
)


def appointments_of(account_id: str, limit: int) -> Operation[list[Appointment]]:
    async def operation(connection: Connection) -> list[Appointment]:
        rows = await connection.fetch(_OF_ACCOUNT, account_id, limit)
        return [_appointment(row) for row in rows]

    return operation


def _appointment(row: Any) -> Appointment:
    (id_, reference, kind, category, status, consultant_id, showroom_id, start, end) = row[:9]
    (name, email, phone, postcode, address, notes, token_hash, account_id) = row[9:17]
    reason, previous = row[17:19]
    return Appointment(
        id_,
        reference,
        kind,
        category,
        status,
        consultant_id,
        showroom_id,
        start,
        end,
        name,
        email,
        phone,
        postcode,
        address,
        notes,
        bytes(token_hash),
        reason,
        previous,
        account_id,
    )


_CANCEL = """
UPDATE appointments SET status = 'CANCELLED', status_reason = $2, updated_at = now()
WHERE id = $1 AND status IN ('PENDING', 'CONFIRMED', 'RESCHEDULED')
RETURNING id
"""


def cancel(appointment_id: str, reason: str, notice: OutboxJob) -> Operation[Appointment | None]:
    """Cancel an active appointment (``notice`` to the outbox if this cancelled it); the
    appointment as it is now (None: no such id)."""

    async def operation(connection: Connection) -> Appointment | None:
        async with connection.transaction():
            if await connection.fetchval(_CANCEL, appointment_id, reason) is not None:
                await add_many_to_outbox(connection, [notice])
            row = await connection.fetchrow(_SELECT_APPOINTMENT, appointment_id)
        return None if row is None else _appointment(row)

    return operation


_RESCHEDULE = """
UPDATE appointments SET previous_starts_at = starts_at, starts_at = $2, ends_at = $3,
    consultant_id = $4, status = 'RESCHEDULED', updated_at = now()
WHERE id = $1 AND status IN ('CONFIRMED', 'RESCHEDULED')
RETURNING id
"""


def reschedule(
    appointment_id: str,
    candidates: Sequence[str],
    start: datetime,
    end: datetime,
    notice: OutboxJob,
) -> Operation[Appointment | SlotTaken | None]:
    """Move an active appointment to ``start`` with the first free candidate
    (``notice`` to the outbox if it moved).

    None: no such appointment; SlotTaken: no candidate is free then; otherwise the
    appointment as it is now (unchanged if it was not movable: the caller checks)."""

    async def operation(connection: Connection) -> Appointment | SlotTaken | None:
        async with connection.transaction():
            current = await connection.fetchrow(_SELECT_APPOINTMENT + " FOR UPDATE", appointment_id)
            if current is None:
                return None
            if current[4] not in ("CONFIRMED", "RESCHEDULED"):
                return _appointment(current)
            for consultant_id in candidates:
                # A savepoint per try: the exclusion constraint aborts the statement.
                try:
                    async with connection.transaction():
                        moved = await connection.fetchval(
                            _RESCHEDULE, appointment_id, start, end, consultant_id
                        )
                except asyncpg.ExclusionViolationError:
                    continue
                if moved is not None:
                    await add_many_to_outbox(connection, [notice])
                    row = await connection.fetchrow(_SELECT_APPOINTMENT, appointment_id)
                    return _appointment(row)
            return SlotTaken()

    return operation


def booked_between(first: datetime, last: datetime) -> Operation[set[tuple[str, datetime]]]:
    """(consultant id, start) of the active appointments overlapping [first, last)."""

    async def operation(connection: Connection) -> set[tuple[str, datetime]]:
        return {(r[0], r[1]) for r in await connection.fetch(_BOOKED_BETWEEN, first, last)}

    return operation


_REPLAY_KEY = """
INSERT INTO idempotency_keys (key, request_hash, status, response) VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING
"""
_EXISTS = "SELECT status FROM appointments WHERE id = $1"
_INSERT_LOST = f"""
INSERT INTO appointments ({_COLUMNS}, status_reason)
SELECT *, $18 FROM unnest(
    $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::text[],
    $14::text[], $15::text[], $16::bytea[], $17::uuid[]
)
ON CONFLICT (id) DO NOTHING RETURNING id
"""


def write_replayed(
    booking: NewBooking, consultant_id: str, status: int, response: str, notice: OutboxJob
) -> Operation[Replayed]:
    """Write a booking accepted while Postgres was down as CONFIRMED with its stored
    answer and ``notice``, if its slot is still free: ``Booked``; ``SlotTaken`` if not
    (nothing written); the appointment's status if it exists already (a redelivered
    replay, or a concurrent one that won: that one stands)."""

    async def operation(connection: Connection) -> Replayed:
        async with connection.transaction():
            existing = await connection.fetchval(_EXISTS, booking.id)
            if existing is not None:
                return str(existing)
            await connection.execute(
                _REPLAY_KEY, booking.idempotency_key, booking.request_hash, status, response
            )
            row = _row(booking, consultant_id, "CONFIRMED")
            if await connection.fetch(_INSERT_APPOINTMENTS, *_columns([row])):
                await add_many_to_outbox(connection, [notice])
                return Booked(consultant_id)
            # Nothing inserted: the slot is taken, or a concurrent replay of this very
            # booking won (its insert made ours wait, then skip).
            raced = await connection.fetchval(_EXISTS, booking.id)
            return SlotTaken() if raced is None else str(raced)

    return operation


def record_lost(
    booking: NewBooking, consultant_id: str, reason: str, notice: OutboxJob
) -> Operation[str]:
    """Write a booking that could not be kept as CANCELLED with ``reason`` and
    ``notice``; the appointment's status (an existing one is left as it is)."""

    async def operation(connection: Connection) -> str:
        async with connection.transaction():
            lost = _row(booking, consultant_id, "CANCELLED")
            inserted = await connection.fetch(_INSERT_LOST, *_columns([lost]), reason)
            if inserted:
                await add_many_to_outbox(connection, [notice])
                return "CANCELLED"
            return str(await connection.fetchval(_EXISTS, booking.id))

    return operation
