"""The per-customer cap on active future bookings, decided inside the booking
transaction (``book_batch``) under per-customer advisory locks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from adapters._booking_records import NewBooking
from adapters._postgres import Connection

__all__ = ["ACTIVE", "within_the_cap"]

ACTIVE = "status IN ('PENDING', 'CONFIRMED', 'RESCHEDULED')"
_PHONE_DIGITS = "regexp_replace(customer_phone, '[^0-9]', '', 'g')"
# Advisory-lock class of the per-customer cap (two-int form: apart from other locks).
_CUSTOMER_LOCK_CLASS = 4201
# A customer is an e-mail address (lower-cased here, by Postgres: the one place that
# decides what is the same address) and, apart, a phone number's digits. $1 e-mails,
# $2 phone digits, one pair per booking.
_CUSTOMER_KEYS = """
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(e, p, n)
"""
# Locks in key order (the sorted subquery), so two batches never wait on each other
# in opposite orders.
_LOCK_CUSTOMERS = f"""
SELECT pg_advisory_xact_lock({_CUSTOMER_LOCK_CLASS}, hashtext(k)) FROM (
    SELECT DISTINCT k {_CUSTOMER_KEYS}
    CROSS JOIN LATERAL (VALUES ('email:' || lower(e)), ('phone:' || p)) AS v(k)
    ORDER BY k
) AS sorted
"""
# Through the customer's index (migrations/0011: customer, then starts_at), whatever
# the statistics say: the status is compared as an expression that no partial index's
# predicate follows from, so no partial index (each one over every active booking) can
# stand in for the customer's own.
_STILL_ACTIVE = "status || '' IN ('PENDING', 'CONFIRMED', 'RESCHEDULED')"
_ACTIVE_BY_CUSTOMER = f"""
SELECT 'email:' || lower(e), (
    SELECT count(*) FROM appointments
    WHERE lower(customer_email) = lower(e) AND starts_at > now() AND {_STILL_ACTIVE}
), 'phone:' || p, (
    SELECT count(*) FROM appointments
    WHERE {_PHONE_DIGITS} = p AND starts_at > now() AND {_STILL_ACTIVE}
) {_CUSTOMER_KEYS} ORDER BY n
"""
_FORGET_KEYS = "DELETE FROM idempotency_keys WHERE key = ANY($1::text[])"


async def within_the_cap(
    connection: Connection, todo: Sequence[NewBooking], cap: int
) -> tuple[list[NewBooking], list[NewBooking]]:
    """``todo`` split into the bookings to try and those over the cap (a customer's
    active future bookings plus this batch's, in batch order), under the customers'
    locks: a concurrent batch of the same customer waits until this one commits. The
    refused ones' idempotency keys are forgotten: a retry decides afresh."""
    if not todo:
        return [], []
    emails = [b.customer_email for b in todo]
    phones = ["".join(c for c in b.customer_phone if c in "0123456789") for b in todo]
    await connection.execute(_LOCK_CUSTOMERS, emails, phones)
    rows = await connection.fetch(_ACTIVE_BY_CUSTOMER, emails, phones)
    counts: dict[str, int] = {}
    for email, by_email, phone, by_phone in rows:
        counts[email], counts[phone] = by_email, by_phone
    allowed: list[NewBooking] = []
    over: list[NewBooking] = []
    # Attempts of one customer at one time count once: at most one of them can book
    # (the others are 409 slot_taken, not too_many_bookings).
    counted: set[tuple[str, datetime]] = set()
    for b, (email, _, phone, _) in zip(todo, rows, strict=True):
        fresh = [k for k in (email, phone) if (k, b.start) not in counted]
        if any(counts[k] >= cap for k in fresh):
            over.append(b)
            continue
        allowed.append(b)
        for k in fresh:
            counts[k] += 1
            counted.add((k, b.start))
    if over:
        await connection.execute(_FORGET_KEYS, [b.idempotency_key for b in over])
    return allowed, over
