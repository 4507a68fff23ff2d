"""The BookingReader: a guest reads a booking with its manage token, apart from the writer.

Reads never share the SlotBooker's mailbox or breaker: a flood of lookups (valid or
not) cannot fill the writer's mailbox, and a read that cannot be answered (Redis
down, say) never counts as a failed booking. Its own bounded mailbox is the reads'
bulkhead; the Postgres and Redis reconnect gates make a dead store answer at once.
Cancel and reschedule are checked here too before the writer sees them.

Every lookup does the same work, a Redis read of the pending bookings and a Postgres
read, so neither the answer nor its timing tells an unknown id from a wrong token:
both are 404, or both 503 while a store that might hold the booking cannot be read.
"""

from __future__ import annotations

from typing import Any

from actors._booking_messages import AccountAppointments, Lookup
from actors._booking_views import booking_from_record
from actors._tokens import check_token
from adapters import Appointment, BookingCache, BookingStore
from supervisors import (
    ConnectionLost,
    LomashError,
    NotFound,
    OperationTimeout,
    ServiceUnavailable,
    is_outage,
)

__all__ = ["BookingReader", "find_booking"]


class BookingReader:
    def __init__(self, store: BookingStore, cache: BookingCache) -> None:
        self._store = store
        self._cache = cache

    async def handle(self, message: Lookup | AccountAppointments) -> Any:
        match message:
            case Lookup():
                return await find_booking(
                    self._store,
                    self._cache,
                    message.appointment_id,
                    message.token,
                    message.account_id,
                )
            case AccountAppointments():
                return await self._store.of_account(message.account_id, message.limit)


def _allowed(appointment: Appointment, token: str | None, account_id: str | None) -> bool:
    """The caller holds the manage token, or is the account the booking belongs to."""
    if token is not None and check_token(appointment, token):
        return True
    return account_id is not None and appointment.account_id == account_id


async def find_booking(
    store: BookingStore,
    cache: BookingCache,
    appointment_id: str,
    token: str | None,
    account_id: str | None = None,
) -> Appointment:
    """The appointment if ``token`` is its manage token or it belongs to ``account_id``,
    from Postgres or, while it is pending, from Redis; else ``NotFound`` (or the outage
    that may have hidden it).

    Redis is read first: a replay commits the booking to Postgres before it drops the
    pending record, so in this order a booking being replayed is always seen in one of
    the two (the other order could miss it in both)."""
    pending: Appointment | None = None
    unread: LomashError | None = None
    try:
        pending = await _pending(cache, appointment_id)
    except LomashError as error:
        if not is_outage(error):
            raise
        unread = error
    found: Appointment | None = None
    try:
        found = await store.fetch(appointment_id)
    except (ConnectionLost, OperationTimeout, ServiceUnavailable) as error:
        unread = error  # Postgres's outage is the one to report
    for candidate in (found, pending):
        if candidate is not None and _allowed(candidate, token, account_id):
            return candidate
    if unread is not None:
        raise unread
    raise NotFound("no such appointment")


async def _pending(cache: BookingCache, appointment_id: str) -> Appointment | None:
    record = await cache.pending(appointment_id)
    if record is None:
        return None
    return booking_from_record(record).as_appointment(record["consultant_id"], "PENDING")
