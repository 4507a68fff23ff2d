"""The consultants' schedule, shared by the SlotBooker and the catalogue.

Loaded from Postgres and kept for ``schedule_refresh_s``; a copy goes to Redis so a
process started while Postgres is down can still check slots and serve cached
availability. While Postgres is down the last snapshot is used, however old.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import date, time

import structlog
import trio

from actors._calendar import Consultant, Roster
from adapters import BookingCache, BookingStore, ScheduleRows
from supervisors import LomashError

__all__ = ["RosterSource", "roster_from_rows"]

log = structlog.get_logger("actors.schedule")


def roster_from_rows(rows: ScheduleRows) -> Roster:
    hours: dict[str, dict[int, list[tuple[time, time]]]] = defaultdict(lambda: defaultdict(list))
    for consultant_id, weekday, starts, ends in rows.hours:
        hours[consultant_id][weekday].append((starts, ends))
    blocked: dict[str, set[date]] = defaultdict(set)
    for consultant_id, day in rows.blocked:
        blocked[consultant_id].add(day)
    consultants = tuple(
        Consultant(
            id=cid,
            name=name,
            showroom_id=showroom_id,
            specialisations=frozenset(specialisations),
            hours={d: tuple(sorted(w)) for d, w in hours[cid].items()},
            blocked=frozenset(blocked[cid]),
        )
        for cid, name, showroom_id, specialisations in sorted(rows.consultants)
    )
    return Roster(showrooms=frozenset(rows.showrooms), consultants=consultants)


def _encode(rows: ScheduleRows) -> str:
    return json.dumps(
        {
            "showrooms": rows.showrooms,
            "consultants": rows.consultants,
            "hours": [(c, d, s.isoformat(), e.isoformat()) for c, d, s, e in rows.hours],
            "blocked": [(c, d.isoformat()) for c, d in rows.blocked],
        }
    )


def _decode(text: str) -> ScheduleRows:
    raw = json.loads(text)
    return ScheduleRows(
        showrooms=raw["showrooms"],
        consultants=[tuple(c) for c in raw["consultants"]],
        hours=[(c, d, time.fromisoformat(s), time.fromisoformat(e)) for c, d, s, e in raw["hours"]],
        blocked=[(c, date.fromisoformat(d)) for c, d in raw["blocked"]],
    )


class RosterSource:
    def __init__(
        self,
        store: Callable[[], BookingStore],
        cache: Callable[[], BookingCache],
        *,
        refresh_s: float,
    ) -> None:
        self._store = store
        self._cache = cache
        self._refresh_s = refresh_s
        self._schedule: Roster | None = None
        self._loaded_at = -float("inf")
        self._lock = trio.Lock()

    async def current(self) -> Roster:
        """The schedule, reloaded if older than ``refresh_s`` and Postgres answers;
        while one caller reloads it, the others get the snapshot they had."""
        if self._fresh():
            assert self._schedule is not None
            return self._schedule
        if self._schedule is not None and self._lock.locked():
            return self._schedule  # one caller reloads; nobody else waits on Postgres
        async with self._lock:
            if not self._fresh():
                await self._reload()
            assert self._schedule is not None
            return self._schedule

    def _fresh(self) -> bool:
        return (
            self._schedule is not None and trio.current_time() - self._loaded_at < self._refresh_s
        )

    async def _reload(self) -> None:
        cache = self._cache()
        try:
            rows = await self._store().schedule_rows()
        except LomashError as error:
            if self._schedule is not None:
                log.warning("schedule_reload_failed_using_last", error=error.message)
                self._loaded_at = trio.current_time()  # look again after refresh_s
                return
            copy = await cache.schedule_copy()
            if copy is None:
                raise
            rows = _decode(copy)
            log.warning("schedule_from_redis_copy", error=error.message)
        else:
            try:
                await cache.keep_schedule_copy(_encode(rows))
            except LomashError as error:
                log.info("schedule_copy_not_stored", error=error.message)
        self._schedule = roster_from_rows(rows)
        self._loaded_at = trio.current_time()
