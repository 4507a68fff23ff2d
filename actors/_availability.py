"""Free slots, cached per (type, showroom, local day) in Redis.

A day's free slots are computed from the roster and the active bookings (one
Postgres read for all missing days), then cached twice: a fresh copy for
``availability_fresh_s``, deleted by every booking change of that day, and a stale
copy kept ``availability_stale_s``. Every change also bumps the day's generation; a
list computed before a change is not stored after it (no stale list for 30 s).
While Postgres is down the stale copy is served minus the slots held in Redis
(locked or pending); a day with no copy at all is a 503. Without Redis everything
is computed from Postgres.

Each day read from the fresh copy or computed is also kept in this process's
``AvailabilityMemory`` (actors/_availability_memory.py), forgotten when any process
changes that day: a warm read asks neither Redis nor Postgres. Stale copies are never
kept there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import structlog
import trio

from actors._availability_memory import AvailabilityMemory
from actors._booking_rules import check_showroom, horizon_end
from actors._calendar import LONDON, AppointmentType, Category, Roster, Slot, days
from actors._roster import RosterSource
from adapters import AvailabilityCopy, AvailabilityDay, BookingCache, BookingStore, SlotRef
from config import BookingSettings
from supervisors import ConnectionLost, Idempotent, LomashError, OperationTimeout

__all__ = ["Availability", "FindSlots"]

type _DaySlots = list[tuple[int, str]]  # (UTC epoch seconds, consultant id): as cached

log = structlog.get_logger("actors.availability")


@dataclass(frozen=True, slots=True)
class FindSlots(Idempotent):
    """Free slots of local days ``first_day``..``last_day`` (validated by the gateway)."""

    kind: AppointmentType
    showroom_id: str | None
    category: Category | None
    first_day: date
    last_day: date


@dataclass(slots=True)
class _SharedRead:
    done: trio.Event = field(default_factory=trio.Event)
    booked: set[tuple[str, datetime]] | None = None
    error: Exception | None = None


class Availability:
    def __init__(
        self,
        store: BookingStore,
        cache: BookingCache,
        roster: RosterSource,
        settings: BookingSettings,
        *,
        memory: AvailabilityMemory | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._memory = memory or AvailabilityMemory(0.0)
        self._store = store
        self._cache = cache
        self._roster = roster
        self._settings = settings
        self._clock = clock
        # Reads of the same days' bookings in flight: the later callers wait for the
        # first one's answer instead of each asking Postgres (a cold or just-expired
        # week asked by fifty clients at once is one query, not fifty).
        self._reading: dict[tuple[datetime, datetime], _SharedRead] = {}

    async def find(self, message: FindSlots) -> list[Slot]:
        roster = await self._roster.current()
        # Before any cache key is built from it: only a showroom that exists.
        check_showroom(roster, message.showroom_id)
        wanted = list(days(message.first_day, message.last_day))
        showroom = message.showroom_id if message.kind is AppointmentType.SHOWROOM else None
        memory = self._memory
        by_day: dict[date, tuple[Slot, ...]] = {}
        for d in wanted:
            remembered = memory.get(AvailabilityDay(message.kind, showroom, d))
            if remembered is not None:
                by_day[d] = remembered
        if len(by_day) < len(wanted):
            await self._recall(roster, message.kind, showroom, wanted, by_day)
        now = self._clock()
        last = horizon_end(now, self._settings.horizon_days)
        fits = _fitting(roster, message.category)
        return [
            s
            for d in wanted
            for s in by_day[d]
            if now < s.start <= last and (fits is None or s.consultant_id in fits)
        ]

    async def _recall(
        self,
        roster: Roster,
        kind: AppointmentType,
        showroom: str | None,
        wanted: list[date],
        by_day: dict[date, tuple[Slot, ...]],
    ) -> None:
        """Fill ``by_day`` with the days memory did not have: from the fresh copies,
        else computed (both kept in memory), else (Postgres down) the stale copies."""
        memory = self._memory
        mark = memory.mark()  # before Redis or Postgres is read
        asked = [d for d in wanted if d not in by_day]
        cached, seen = await self._read([AvailabilityDay(kind, showroom, d) for d in asked])
        missing: list[date] = []
        for d, value in zip(asked, cached, strict=True):
            if value is None:
                missing.append(d)
            else:
                by_day[d] = _slots(_decode(value), showroom)
                memory.keep(AvailabilityDay(kind, showroom, d), by_day[d], mark)
        if not missing:
            return
        # The generation of each day as it was before Postgres is read: a list
        # computed from an older state is not cached after a newer change.
        seen_at = dict(zip(asked, seen, strict=True))
        try:
            computed = await self._compute(roster, kind, showroom, missing, seen_at)
        except (ConnectionLost, OperationTimeout) as down:
            stale = await self._stale(kind, showroom, missing, down)
            by_day.update({d: _slots(slots, showroom) for d, slots in stale.items()})
            return
        for d, slots in computed.items():
            by_day[d] = _slots(slots, showroom)
            memory.keep(AvailabilityDay(kind, showroom, d), by_day[d], mark)

    async def _read(self, days: list[AvailabilityDay]) -> tuple[list[str | None], list[str]]:
        """The fresh copies and generations; without the cache, none and '0'."""
        try:
            return await self._cache.read_availability(days)
        except LomashError as error:
            log.info("availability_cache_unavailable", error=error.message)
            return [None] * len(days), ["0"] * len(days)

    async def _booked_between(self, first: datetime, last: datetime) -> set[tuple[str, datetime]]:
        """``store.booked_between``, one read per range at a time (see ``_reading``).
        A read that was cancelled gives its waiters nothing: they read themselves."""
        key = (first, last)
        while (shared := self._reading.get(key)) is not None:
            await shared.done.wait()
            if shared.error is not None:
                raise shared.error  # the same outage for every caller of that read
            if shared.booked is not None:
                return shared.booked
        shared = self._reading[key] = _SharedRead()
        try:
            shared.booked = await self._store.booked_between(first, last)
        except Exception as error:
            shared.error = error
            raise
        finally:
            del self._reading[key]
            shared.done.set()
        return shared.booked

    async def _compute(
        self,
        roster: Roster,
        kind: AppointmentType,
        showroom: str | None,
        missing: list[date],
        seen_at: dict[date, str],
    ) -> dict[date, _DaySlots]:
        first = _local_midnight(missing[0])
        last = _local_midnight(missing[-1] + timedelta(days=1))
        booked = await self._booked_between(first, last)
        booked_utc = {(c, s.astimezone(UTC)) for c, s in booked}
        computed: dict[date, _DaySlots] = {}
        for day in missing:
            # Past slots are dropped when served, so a cached day stays right all day.
            free = roster.free_slots(kind, showroom, None, day, day, booked=booked_utc, now=_EPOCH)
            computed[day] = [(int(s.start.timestamp()), s.consultant_id) for s in free]
        copies = [
            AvailabilityCopy(
                AvailabilityDay(kind, showroom, day),
                json.dumps(slots),
                fresh_s=self._settings.availability_fresh_s,
                stale_s=self._settings.availability_stale_s,
                seen=seen_at[day],
            )
            for day, slots in computed.items()
        ]
        try:
            await self._cache.keep_availability(copies)
        except LomashError as error:
            log.info("availability_not_cached", error=error.message)
        return computed

    async def _stale(
        self, kind: AppointmentType, showroom: str | None, missing: list[date], down: LomashError
    ) -> dict[date, _DaySlots]:
        """Postgres is down: the stale copies, minus slots held in Redis."""
        try:
            stale = await self._cache.stale_availability(
                [AvailabilityDay(kind, showroom, d) for d in missing]
            )
        except LomashError:
            raise down from None
        if any(value is None for value in stale):
            raise down
        by_day = {d: _decode(v) for d, v in zip(missing, stale, strict=True) if v is not None}
        everything = [(d, slot) for d in missing for slot in by_day[d]]
        slots = [SlotRef(c, datetime.fromtimestamp(epoch, UTC)) for _, (epoch, c) in everything]
        try:
            held = await self._cache.held(slots)
        except LomashError:
            raise down from None
        served: dict[date, _DaySlots] = {d: [] for d in missing}
        for (day, slot), taken in zip(everything, held, strict=True):
            if not taken:
                served[day].append(slot)
        log.info("availability_served_stale", days=len(missing), error=down.message)
        return served


def _slots(day: _DaySlots, showroom: str | None) -> tuple[Slot, ...]:
    return tuple(Slot(datetime.fromtimestamp(e, UTC), c, showroom) for e, c in day)


def _decode(value: str) -> _DaySlots:
    return [(int(epoch), str(consultant)) for epoch, consultant in json.loads(value)]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=LONDON).astimezone(UTC)


def _fitting(roster: Roster, category: Category | None) -> set[str] | None:
    """The consultants whose specialisations cover ``category`` (None: everyone)."""
    if category is None:
        return None
    needs = category.needs()
    return {c.id for c in roster.consultants if needs <= c.specialisations}
