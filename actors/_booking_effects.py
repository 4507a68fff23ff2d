"""What a booking change causes beyond its row: the notification it announces (an
outbox job, the booker's decision) and what it does to the cache (stale availability,
freed or released slot locks), applied in one call."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from actors._calendar import LONDON, AppointmentType, Consultant
from adapters import AvailabilityDay, BookingCache, CacheChanges, OutboxJob
from config import BookingSettings

__all__ = ["NOTIFICATIONS", "apply_changes", "availability_changed", "notice"]

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
