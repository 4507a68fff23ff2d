"""What a booking change causes beyond its row: the notification it announces (an
outbox job, the booker's decision) and what it does to the cache (stale availability,
freed or released slot locks), applied in one call."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from actors._calendar import LONDON, AppointmentType, Consultant
from adapters import AvailabilityDay, BookingCache, CacheChanges, OutboxJob
from config import BookingSettings
from supervisors import LomashError, is_outage

__all__ = ["NOTIFICATIONS", "apply_best_effort", "apply_changes", "availability_changed", "notice"]

log = structlog.get_logger("actors.bookings")

NOTIFICATIONS = "notifications"


def notice(kind: str, appointment_id: str, **extra: Any) -> OutboxJob:
    """A notification job for the notifier (``appointment.confirmed``, ...); its id
    makes it once per event: pass a fresh ``version`` for an event that may recur."""
    job_id = f"{kind}:{appointment_id}:{extra.get('version', 0)}"
    return OutboxJob(job_id, NOTIFICATIONS, kind, {"appointment_id": appointment_id, **extra})


def availability_changed(changes: CacheChanges, consultant: Consultant, start: datetime) -> None:
    """Add to ``changes`` what a change to this consultant-slot does to availability:
    every list that may show the slot is stale, and the day's generation moves."""
    day = start.astimezone(LONDON).date()
    changes.stale += [
        AvailabilityDay(AppointmentType.ONLINE, None, day),
        AvailabilityDay(AppointmentType.HOME_MEASUREMENT, None, day),
        AvailabilityDay(AppointmentType.SHOWROOM, consultant.showroom_id, day),
    ]
    changes.bumps.append(day)


async def apply_changes(
    cache: BookingCache, changes: CacheChanges, settings: BookingSettings
) -> None:
    """Apply ``changes``: answers kept ``idempotency_keep_s``, generations a while past
    the stale copies they guard."""
    await cache.apply(
        changes, keep_s=settings.idempotency_keep_s, bump_ttl_s=2 * settings.availability_stale_s
    )


async def apply_best_effort(
    cache: BookingCache, changes: CacheChanges, settings: BookingSettings
) -> None:
    """``apply_changes`` after a write that stands without it: a missed change
    expires by TTL. An outage is logged as such; any other failure is a bug and
    logged as an error."""
    if not changes:
        return
    try:
        await apply_changes(cache, changes, settings)
    except LomashError as error:
        report = log.info if is_outage(error) else log.error
        report("cache_changes_skipped", error_type=type(error).__name__, error=error.message)
