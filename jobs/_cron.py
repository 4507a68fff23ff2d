"""Cron expressions evaluated in a time zone: pure time math, no I/O.

``CronSchedule("0 2 * * *", ZoneInfo("Europe/London"))`` is 02:00 London time every
day. Its instants are aware UTC datetimes: ``next_after(moment)`` is the first tick
strictly after ``moment``, ``previous_at_or_before(moment)`` the last tick at or
before it.

Syntax: five fields, ``minute hour day-of-month month day-of-week``, each a
comma-separated list of ``*``, ``a``, ``a-b``, ``*/n`` or ``a-b/n`` (numbers only, no
month or day names, no ``@daily``). Ranges: minute 0-59, hour 0-23, day-of-month
1-31, month 1-12, day-of-week 0-7 where 0 and 7 are both Sunday.

Day matching (POSIX): when both day-of-month and day-of-week are restricted, a day
matches if *either* matches (``0 0 13 * 5`` is every 13th and every Friday); when
one of them is unrestricted, only the other counts. A field is *restricted* when it
leaves out some of its values, so ``*/2`` restricts and ``*/1`` or ``0-6`` do not
(Vixie cron instead calls any field starting with ``*`` unrestricted).

An expression is rejected at construction (``ValueError`` naming the field) when it
is malformed or can never fire (``0 0 30 2 *``: February has no 30th).

Daylight saving time: cron fields are local wall-clock times, and the two days a
year when the wall clock jumps are settled this way:

- **Gap (spring forward).** A local time that does not exist fires once, at the
  first instant after the gap. In London on 29 March 2026 clocks go from 01:00 GMT
  to 02:00 BST: ``30 1 * * *`` fires at 02:00 BST (01:00 UTC). Several ticks inside
  one gap (``*/15`` at 01:00, 01:15, 01:30, 01:45) collapse into that one instant,
  which is also 02:00's tick: the schedule fires once there.
- **Overlap (fall back).** A local time that occurs twice fires once, at its first
  occurrence (``fold=0``). In London on 25 October 2026 01:00-01:59 happens in BST
  and again in GMT: ``30 1 * * *`` fires at 01:30 BST (00:30 UTC) only, and ``*/15``
  fires at 01:00-01:45 BST and then not again until 02:00 GMT (02:00 UTC).

So every local tick maps to exactly one instant, and the mapping never goes
backwards in time: each schedule fires at most once per distinct instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["CronSchedule"]

_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # at most (leap Feb)
_SUNDAY, _ALT_SUNDAY = 0, 7
_ONE_DAY = timedelta(days=1)
_ONE_SECOND = timedelta(seconds=1)


def _number(name: str, text: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdecimal()):
        raise ValueError(f"{name}: {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is out of range {low}-{high}")
    return value


def _parse_item(name: str, item: str, low: int, high: int) -> range:
    span, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not (step_text.isascii() and step_text.isdecimal()) or int(step_text) == 0:
            raise ValueError(f"{name}: step {step_text!r} in {item!r} must be a number >= 1")
        step = int(step_text)
    if span == "*":
        return range(low, high + 1, step)
    first_text, dash, last_text = span.partition("-")
    first = _number(name, first_text, low, high)
    if not dash:
        if slash:
            raise ValueError(f"{name}: a step needs '*' or a range before it, got {item!r}")
        return range(first, first + 1)
    last = _number(name, last_text, low, high)
    if last < first:
        raise ValueError(f"{name}: range {item!r} runs backwards")
    return range(first, last + 1, step)


def _parse_field(name: str, text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"{name}: empty list item in {text!r}")
        values.update(_parse_item(name, item, low, high))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed five-field cron expression, read as wall-clock time in ``timezone``."""

    expression: str
    timezone: ZoneInfo
    minutes: tuple[int, ...] = field(init=False)  # each field sorted ascending
    hours: tuple[int, ...] = field(init=False)
    days_of_month: frozenset[int] = field(init=False)
    months: frozenset[int] = field(init=False)
    days_of_week: frozenset[int] = field(init=False)  # 0 = Sunday (7 is folded into 0)
    # POSIX: when both are restricted a day matches if either does.
    either_day: bool = field(init=False)

    def __post_init__(self) -> None:
        texts = self.expression.split()
        if len(texts) != len(_FIELDS):
            raise ValueError(
                f"cron expression needs {len(_FIELDS)} fields ({' '.join(_FIELDS)}), "
                f"got {len(texts)} in {self.expression!r}"
            )
        parsed = [
            _parse_field(name, text, low, high)
            for name, text, (low, high) in zip(_FIELDS, texts, _BOUNDS, strict=True)
        ]
        minutes, hours, doms, months, raw_dows = parsed
        dows = frozenset(_SUNDAY if day == _ALT_SUNDAY else day for day in raw_dows)
        dom_restricted = len(doms) < _BOUNDS[2][1]
        dow_restricted = len(dows) < _ALT_SUNDAY
        if not dow_restricted and not any(
            day <= _DAYS_IN_MONTH[month - 1] for day in doms for month in months
        ):
            raise ValueError(
                f"day-of-month: {texts[2]!r} never occurs in month {texts[3]!r}, "
                f"so {self.expression!r} would never fire"
            )
        object.__setattr__(self, "minutes", tuple(sorted(minutes)))
        object.__setattr__(self, "hours", tuple(sorted(hours)))
        object.__setattr__(self, "days_of_month", doms)
        object.__setattr__(self, "months", months)
        object.__setattr__(self, "days_of_week", dows)
        object.__setattr__(self, "either_day", dom_restricted and dow_restricted)

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment`` (aware), in UTC."""
        # Wall times before the moment's own map to instants at or before it.
        start = _naive(self._local(moment)).replace(second=0, microsecond=0)
        walls = (wall for wall in self._walls(start.date(), forward=True) if wall >= start)
        return next(tick for tick in map(self._instant, walls) if tick > moment)

    def previous_at_or_before(self, moment: datetime) -> datetime:
        """The last tick at or before ``moment`` (aware), in UTC."""
        local = self._local(moment)
        end = _naive(local)
        if local.fold:
            # In the second pass of a repeated hour, wall times up to one overlap
            # later still map (by fold=0) to instants before the moment.
            end += _offset(local.replace(fold=0)) - _offset(local)
        walls = (wall for wall in self._walls(end.date(), forward=False) if wall <= end)
        return next(tick for tick in map(self._instant, walls) if tick <= moment)

    def matches_day(self, day: date) -> bool:
        """Whether ``day`` (a local date) has ticks."""
        if day.month not in self.months:
            return False
        by_dom = day.day in self.days_of_month
        by_dow = day.isoweekday() % _ALT_SUNDAY in self.days_of_week
        return (by_dom or by_dow) if self.either_day else (by_dom and by_dow)

    def _local(self, moment: datetime) -> datetime:
        if moment.tzinfo is None:
            raise ValueError(f"moment: {moment.isoformat()} is naive, an aware datetime is needed")
        return moment.astimezone(self.timezone)

    def _walls(self, day: date, *, forward: bool) -> Iterator[datetime]:
        """Naive local tick times from ``day`` on, forward or backward, in order."""
        step = _ONE_DAY if forward else -_ONE_DAY
        hours = self.hours if forward else self.hours[::-1]
        minutes = self.minutes if forward else self.minutes[::-1]
        while True:
            if self.matches_day(day):
                for hour in hours:
                    for minute in minutes:
                        yield datetime.combine(day, time(hour, minute))
            day += step

    def _instant(self, wall: datetime) -> datetime:
        """The UTC instant of a naive local time, by the module's DST rules."""
        first = wall.replace(tzinfo=self.timezone, fold=0).astimezone(UTC)
        if _naive(first.astimezone(self.timezone)) == wall:
            return first  # it exists; its first occurrence when it occurs twice
        # In a gap: fold=0 reads it with the offset before the jump (an instant after
        # the jump), fold=1 with the offset after it (an instant before the jump).
        # Bisect, to the second, for the jump: the first instant after the gap.
        before = wall.replace(tzinfo=self.timezone, fold=1).astimezone(UTC)
        after = first
        jumped_to = _offset(after.astimezone(self.timezone))
        while after - before > _ONE_SECOND:
            middle = (before + (after - before) / 2).replace(microsecond=0)
            if _offset(middle.astimezone(self.timezone)) == jumped_to:
                after = middle
            else:
                before = middle
        return after


def _naive(local: datetime) -> datetime:
    return local.replace(tzinfo=None, fold=0)


def _offset(local: datetime) -> timedelta:
    offset = local.utcoffset()
    assert offset is not None  # an aware datetime always has one
    return offset
