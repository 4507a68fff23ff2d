"""The booking calendar: consultants' hours as 60-minute slots, in London time.

Pure functions over a ``Roster`` snapshot (no I/O), so every rule is testable on
its own, including the two days a year London's clocks change.

Times: working hours are local wall-clock windows (``09:00-17:00`` on Mondays). A
window becomes the UTC interval between its local start and end on that date, and
slots are the whole UTC hours inside it. London's offsets are whole hours, so a slot
is on the hour in local time too. On the last Sunday of March a ``00:00-03:00`` window
is two hours long (01:00-02:00 local does not exist) and gives two slots, 00:00 GMT
and 02:00 BST; on the last Sunday of October it is four hours long (01:00-02:00 local
happens twice) and gives four, each shown with its own offset. A window's local times
that fall in the spring gap are read as the time after the gap; in the autumn fold,
as the first (BST) occurrence.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

__all__ = [
    "LONDON",
    "SLOT",
    "AppointmentType",
    "Category",
    "Consultant",
    "Roster",
    "Slot",
    "days",
    "local_iso",
    "window_bounds",
]

LONDON = ZoneInfo("Europe/London")
SLOT = timedelta(minutes=60)
_MIDNIGHT = time(0, 0)


class AppointmentType(StrEnum):
    HOME_MEASUREMENT = "HOME_MEASUREMENT"  # at the customer's address
    ONLINE = "ONLINE"  # a video call
    SHOWROOM = "SHOWROOM"  # at a showroom


class Category(StrEnum):
    KITCHEN = "KITCHEN"
    BEDROOM = "BEDROOM"
    BOTH = "BOTH"

    def needs(self) -> frozenset[str]:
        """The specialisations a consultant needs for this category."""
        if self is Category.BOTH:
            return frozenset({Category.KITCHEN.value, Category.BEDROOM.value})
        return frozenset({self.value})


@dataclass(frozen=True, slots=True)
class Consultant:
    id: str
    name: str
    showroom_id: str
    specialisations: frozenset[str]
    # weekday (0 = Monday) -> local (start, end) windows; end 00:00 means midnight.
    hours: Mapping[int, tuple[tuple[time, time], ...]]
    blocked: frozenset[date] = frozenset()

    def serves(self, kind: AppointmentType, showroom_id: str | None, category: Category) -> bool:
        if not category.needs() <= self.specialisations:
            return False
        return kind is not AppointmentType.SHOWROOM or showroom_id == self.showroom_id

    def slot_starts(self, day: date) -> list[datetime]:
        """The UTC starts of this consultant's slots on local ``day``, in order."""
        if day in self.blocked:
            return []
        starts: list[datetime] = []
        for start, end in self.hours.get(day.weekday(), ()):
            first, last = window_bounds(day, start, end)
            at = _ceil_hour(first)
            while at + SLOT <= last:
                starts.append(at)
                at += SLOT
        return sorted(set(starts))

    def works_at(self, start: datetime) -> bool:
        """Whether a slot starting at ``start`` (aware, on the hour) is one of this
        consultant's: inside a window of its local day, and that day not blocked."""
        start = start.astimezone(UTC)
        day = start.astimezone(LONDON).date()
        if day in self.blocked:
            return False
        for window_start, window_end in self.hours.get(day.weekday(), ()):
            first, last = window_bounds(day, window_start, window_end)
            if first <= start and start + SLOT <= last and _ceil_hour(first) <= start:
                return True
        return False


@dataclass(frozen=True, slots=True)
class Slot:
    start: datetime  # aware, UTC
    consultant_id: str
    showroom_id: str | None

    @property
    def end(self) -> datetime:
        return self.start + SLOT


@dataclass(frozen=True, slots=True)
class Roster:
    """Showrooms and active consultants, as loaded at one moment."""

    showrooms: frozenset[str]
    consultants: tuple[Consultant, ...]
    _by_id: dict[str, Consultant] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {c.id: c for c in self.consultants})

    def consultant(self, consultant_id: str) -> Consultant | None:
        return self._by_id.get(consultant_id)

    def eligible(
        self, kind: AppointmentType, showroom_id: str | None, category: Category
    ) -> list[Consultant]:
        return [c for c in self.consultants if c.serves(kind, showroom_id, category)]

    def free_slots(
        self,
        kind: AppointmentType,
        showroom_id: str | None,
        category: Category | None,
        first_day: date,
        last_day: date,
        *,
        booked: Collection[tuple[str, datetime]],
        now: datetime,
    ) -> list[Slot]:
        """Free slots from local ``first_day`` to ``last_day`` inclusive, by start.

        ``booked``: (consultant id, UTC start) of active bookings and held slots.
        Slots starting at or before ``now`` are not free. ``category`` None: any
        consultant of the type (the category is chosen at booking).
        """
        consultants = [
            c
            for c in self.consultants
            if c.serves(kind, showroom_id, category or Category.KITCHEN)
            or (category is None and c.serves(kind, showroom_id, Category.BEDROOM))
        ]
        slots = [
            Slot(start, consultant.id, _shown_showroom(kind, consultant))
            for day in days(first_day, last_day)
            for consultant in consultants
            for start in consultant.slot_starts(day)
            if start > now and (consultant.id, start) not in booked
        ]
        slots.sort(key=lambda s: (s.start, s.consultant_id))
        return slots

    def candidates(
        self,
        kind: AppointmentType,
        showroom_id: str | None,
        category: Category,
        start: datetime,
        spread: int = 0,
    ) -> list[Consultant]:
        """Consultants who could take this slot, rotated by ``spread`` so concurrent
        "any consultant" bookings do not all try the same one first."""
        able = [c for c in self.eligible(kind, showroom_id, category) if c.works_at(start)]
        if not able:
            return able
        turn = spread % len(able)
        return able[turn:] + able[:turn]


def _shown_showroom(kind: AppointmentType, consultant: Consultant) -> str | None:
    return consultant.showroom_id if kind is AppointmentType.SHOWROOM else None


def window_bounds(day: date, start: time, end: time) -> tuple[datetime, datetime]:
    """The UTC interval of the local window ``start``-``end`` on ``day``."""
    first = _local_to_utc(day, start)
    if end == _MIDNIGHT:
        last = _local_to_utc(day + timedelta(days=1), _MIDNIGHT)
    else:
        last = _local_to_utc(day, end)
    return first, last


def _local_to_utc(day: date, at: time) -> datetime:
    """Local wall time to UTC: a time in the spring gap moves past it; in the autumn
    fold, the first occurrence (fold=0)."""
    # zoneinfo reads a gap time with the offset before the gap (01:30 -> 01:30Z,
    # i.e. 02:30 BST) and a fold time as its first occurrence: both as documented.
    return datetime.combine(day, at, tzinfo=LONDON).astimezone(UTC)


def _ceil_hour(at: datetime) -> datetime:
    floor = at.replace(minute=0, second=0, microsecond=0)
    return floor if floor == at else floor + SLOT


@functools.lru_cache(maxsize=8192)
def local_iso(at: datetime) -> str:
    """``2027-03-29T09:00:00+01:00``: London local time with its offset (remembered:
    the same slots are rendered again and again, and zoneinfo's conversion is the
    dearest part of an availability answer)."""
    return at.astimezone(LONDON).isoformat()


def days(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)
