"""Cron expressions: parsing, the day rule, and London time across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs._cron import CronSchedule

LONDON = ZoneInfo("Europe/London")
UTC_ZONE = ZoneInfo("UTC")
SPRING_FORWARD = datetime(2026, 3, 29, 1, tzinfo=UTC)  # 01:00 GMT -> 02:00 BST
FALL_BACK = datetime(2026, 10, 25, 1, tzinfo=UTC)  # 02:00 BST -> 01:00 GMT


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def ticks(expression: str, after: datetime, count: int, zone: ZoneInfo = LONDON) -> list[datetime]:
    """The first ``count`` ticks strictly after ``after``."""
    schedule = CronSchedule(expression, zone)
    found: list[datetime] = []
    moment = after
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(moment)
    return found


def test_fields_parse_lists_ranges_and_steps() -> None:
    """`*`, lists, ranges and steps expand to exactly the values they name."""
    schedule = CronSchedule("*/20 1-10/4 1,15,31 * 5-7", UTC_ZONE)
    assert schedule.minutes == (0, 20, 40)
    assert schedule.hours == (1, 5, 9)
    assert schedule.days_of_month == {1, 15, 31}
    assert schedule.months == set(range(1, 13))
    assert schedule.days_of_week == {5, 6, 0}  # 7 is Sunday, like 0


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", r"needs 5 fields \(minute hour day-of-month month day-of-week\), got 4"),
        ("* * * * * *", "needs 5 fields .*got 6"),
        ("60 * * * *", "minute: 60 is out of range 0-59"),
        ("* 24 * * *", "hour: 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month: 0 is out of range 1-31"),
        ("* * * 13 *", "month: 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week: 8 is out of range 0-7"),
        ("*/0 * * * *", "minute: step '0' in '\\*/0' must be a number >= 1"),
        ("* 5-1 * * *", "hour: range '5-1' runs backwards"),
        ("* * 1,,2 * *", "day-of-month: empty list item in '1,,2'"),
        ("* * * jan *", "month: 'jan' is not a number"),
        ("* * * * -1", "day-of-week: '' is not a number"),
        ("5/2 * * * *", "minute: a step needs '\\*' or a range before it, got '5/2'"),
        ("0 0 30 2 *", "day-of-month: '30' never occurs in month '2'"),
        ("0 0 31 4,6,9,11 *", "day-of-month: '31' never occurs"),
    ],
)
def test_invalid_expressions_are_rejected_naming_the_field(expression: str, message: str) -> None:
    """A malformed or never-firing expression raises ValueError at construction."""
    with pytest.raises(ValueError, match=message):
        CronSchedule(expression, LONDON)


def test_a_february_29th_schedule_is_valid_and_waits_for_a_leap_year() -> None:
    """29 February exists in some years, so it is accepted and fires in 2028."""
    assert ticks("0 0 29 2 *", utc(2026, 3, 1), 2, UTC_ZONE) == [
        utc(2028, 2, 29),
        utc(2032, 2, 29),
    ]


def test_next_after_crosses_month_and_year_ends() -> None:
    """Monthly and yearly ticks roll over into the next month and year."""
    assert ticks("0 0 1 * *", utc(2026, 1, 31, 12), 2, UTC_ZONE) == [
        utc(2026, 2, 1),
        utc(2026, 3, 1),
    ]
    assert ticks("59 23 31 12 *", utc(2026, 12, 31, 23, 59), 1, UTC_ZONE) == [
        utc(2027, 12, 31, 23, 59)
    ]
    assert ticks("30 0 1 1 *", utc(2026, 12, 31, 23, 59), 1, UTC_ZONE) == [utc(2027, 1, 1, 0, 30)]


def test_next_after_is_strictly_after_and_previous_includes_the_moment() -> None:
    """A moment on a tick: next_after skips it, previous_at_or_before returns it."""
    schedule = CronSchedule("*/15 * * * *", UTC_ZONE)
    assert schedule.next_after(utc(2026, 5, 1, 10, 15)) == utc(2026, 5, 1, 10, 30)
    assert schedule.previous_at_or_before(utc(2026, 5, 1, 10, 15)) == utc(2026, 5, 1, 10, 15)
    assert schedule.previous_at_or_before(utc(2026, 5, 1, 10, 14)) == utc(2026, 5, 1, 10, 0)


def test_restricted_day_of_month_and_day_of_week_match_either() -> None:
    """`0 0 13 * 5` fires on every Friday and on the 13th (a Monday in April 2026)."""
    assert ticks("0 0 13 * 5", utc(2026, 4, 1), 5, UTC_ZONE) == [
        utc(2026, 4, 3),
        utc(2026, 4, 10),
        utc(2026, 4, 13),
        utc(2026, 4, 17),
        utc(2026, 4, 24),
    ]


def test_an_unrestricted_day_of_week_leaves_day_of_month_alone() -> None:
    """With day-of-week `*`, only the day-of-month counts (and vice versa)."""
    assert ticks("0 0 13 * *", utc(2026, 4, 1), 2, UTC_ZONE) == [utc(2026, 4, 13), utc(2026, 5, 13)]
    assert ticks("0 0 * * 0-7", utc(2026, 4, 1), 2, UTC_ZONE) == [utc(2026, 4, 2), utc(2026, 4, 3)]
    assert ticks("0 0 * 4 5", utc(2026, 4, 1), 2, UTC_ZONE) == [utc(2026, 4, 3), utc(2026, 4, 10)]


def test_daily_0130_in_the_spring_forward_gap_fires_once_when_the_gap_ends() -> None:
    """29 March 2026: 01:30 does not exist in London and fires at 02:00 BST (01:00 UTC)."""
    assert ticks("30 1 * * *", utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 1, 30),  # GMT
        SPRING_FORWARD,
        utc(2026, 3, 30, 0, 30),  # BST
    ]


def test_daily_0130_in_the_fall_back_overlap_fires_once_at_the_first_occurrence() -> None:
    """25 October 2026: 01:30 happens twice in London and fires at 01:30 BST only."""
    assert ticks("30 1 * * *", utc(2026, 10, 23, 12), 3) == [
        utc(2026, 10, 24, 0, 30),  # BST
        utc(2026, 10, 25, 0, 30),  # BST, the first 01:30; not 01:30 UTC, the second
        utc(2026, 10, 26, 1, 30),  # GMT
    ]


def test_every_15_minutes_runs_straight_through_the_spring_forward_gap() -> None:
    """01:00-01:45 local do not exist: they and 02:00 BST are the one tick at 01:00 UTC."""
    assert ticks("*/15 * * * *", utc(2026, 3, 29, 0, 40), 4) == [
        utc(2026, 3, 29, 0, 45),  # 00:45 GMT
        SPRING_FORWARD,  # 02:00 BST
        utc(2026, 3, 29, 1, 15),  # 02:15 BST
        utc(2026, 3, 29, 1, 30),
    ]


def test_every_15_minutes_pauses_for_the_repeated_hour_at_fall_back() -> None:
    """01:00-01:45 fire in BST only, so nothing fires between 00:45 and 02:00 UTC."""
    assert ticks("*/15 * * * *", utc(2026, 10, 25, 0, 40), 3) == [
        utc(2026, 10, 25, 0, 45),  # 01:45 BST
        utc(2026, 10, 25, 2, 0),  # 02:00 GMT
        utc(2026, 10, 25, 2, 15),
    ]


def test_previous_tick_from_inside_the_repeated_hour() -> None:
    """At 01:40 GMT (second pass) the last 01:50 tick is 01:50 BST, 50 minutes ago."""
    schedule = CronSchedule("50 1 * * *", LONDON)
    assert schedule.previous_at_or_before(utc(2026, 10, 25, 1, 40)) == utc(2026, 10, 25, 0, 50)
    assert schedule.previous_at_or_before(utc(2026, 10, 25, 0, 49)) == utc(2026, 10, 24, 0, 50)


def test_previous_tick_of_a_time_in_the_gap_is_the_end_of_the_gap() -> None:
    """The 01:30 that does not exist is found, backwards too, at 01:00 UTC."""
    schedule = CronSchedule("30 1 * * *", LONDON)
    assert schedule.previous_at_or_before(SPRING_FORWARD) == SPRING_FORWARD
    assert schedule.previous_at_or_before(SPRING_FORWARD - timedelta(seconds=1)) == utc(
        2026, 3, 28, 1, 30
    )


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (utc(2026, 7, 1), utc(2026, 7, 1, 1)),  # 02:00 BST
        (utc(2026, 1, 15), utc(2026, 1, 15, 2)),  # 02:00 GMT
    ],
)
def test_0200_daily_is_0100_utc_in_summer_and_0200_utc_in_winter(
    after: datetime, expected: datetime
) -> None:
    """London's 02:00 is an hour earlier in UTC under British Summer Time."""
    assert CronSchedule("0 2 * * *", LONDON).next_after(after) == expected


def test_naive_moments_are_refused() -> None:
    """Ticks are instants: a datetime without a zone raises ValueError."""
    with pytest.raises(ValueError, match="moment: 2026-01-01T00:00:00 is naive"):
        CronSchedule("* * * * *", LONDON).next_after(datetime(2026, 1, 1))


NEAR_DST = st.sampled_from([SPRING_FORWARD, FALL_BACK]).flatmap(
    lambda change: st.integers(-3 * 3600, 3 * 3600).map(
        lambda offset_s: change + timedelta(seconds=offset_s)
    )
)
ANY_TIME = st.datetimes(
    min_value=datetime(2026, 1, 1),
    max_value=datetime(2028, 12, 31),
    timezones=st.just(UTC),
)


@settings(max_examples=300, deadline=None)
@given(
    expression=st.sampled_from(
        [
            "30 1 * * *",
            "*/15 * * * *",
            "0 2 * * *",
            "0 0 13 * 5",
            "5,35 0-3 * 3,10 0",
            "*/7 1 25-31 3,10 0",
        ]
    ),
    moment=st.one_of(NEAR_DST, ANY_TIME),
)
def test_next_and_previous_agree_with_no_tick_between(expression: str, moment: datetime) -> None:
    """next_after and previous_at_or_before bracket the moment with no tick between."""
    schedule = CronSchedule(expression, LONDON)
    after = schedule.next_after(moment)
    before = schedule.previous_at_or_before(moment)
    assert before <= moment < after
    assert after.tzinfo is UTC
    assert before.tzinfo is UTC
    assert schedule.previous_at_or_before(after) == after
    assert schedule.previous_at_or_before(after - timedelta(microseconds=1)) == before
    assert schedule.next_after(before) == after
