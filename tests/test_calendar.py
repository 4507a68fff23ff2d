"""The booking calendar's rules, without I/O: slots in London time, clock changes,
blocked days, who can take what, and the free-slot computation."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from actors import AppointmentType, Category, local_iso
from actors._calendar import Consultant, Roster

KITCHEN = frozenset({"KITCHEN"})
BOTH = frozenset({"KITCHEN", "BEDROOM"})
NOW = datetime(2027, 1, 1, tzinfo=UTC)


def consultant(cid: str = "c1", **changes: object) -> Consultant:
    fields: dict[str, object] = {
        "id": cid,
        "name": cid,
        "showroom_id": "leeds",
        "specialisations": BOTH,
        # Mondays 09:00-12:00; Sundays 00:00-03:00 (across the night clocks change).
        "hours": {0: ((time(9), time(12)),), 6: ((time(0), time(3)),)},
    }
    fields.update(changes)
    return Consultant(**fields)  # type: ignore[arg-type]


def starts(c: Consultant, day: date) -> list[str]:
    return [local_iso(s) for s in c.slot_starts(day)]


def test_slots_are_the_whole_hours_of_a_window_in_local_time() -> None:
    """09:00-12:00 London time is three slots, GMT in winter and BST in summer."""
    winter, summer = date(2027, 1, 4), date(2027, 7, 5)
    assert starts(consultant(), winter) == [f"2027-01-04T{h:02}:00:00+00:00" for h in (9, 10, 11)]
    assert starts(consultant(), summer) == [f"2027-07-05T{h:02}:00:00+01:00" for h in (9, 10, 11)]


def test_spring_forward_night_is_two_hours_long() -> None:
    """00:00-03:00 on the spring-forward night is two slots (01:00 does not exist)."""
    assert starts(consultant(), date(2027, 3, 28)) == [
        "2027-03-28T00:00:00+00:00",
        "2027-03-28T02:00:00+01:00",
    ]


def test_fall_back_night_is_four_hours_long_with_the_repeated_hour_twice() -> None:
    """00:00-03:00 on the fall-back night is four slots, 01:00 twice with two offsets."""
    slots = consultant().slot_starts(date(2027, 10, 31))
    assert [local_iso(s) for s in slots] == [
        "2027-10-31T00:00:00+01:00",
        "2027-10-31T01:00:00+01:00",
        "2027-10-31T01:00:00+00:00",
        "2027-10-31T02:00:00+00:00",
    ]
    assert len(set(slots)) == 4  # four distinct instants


def test_a_window_to_midnight_ends_at_the_next_local_midnight() -> None:
    """A window ending at 00:00 runs to the next local midnight."""
    late = consultant(hours={5: ((time(22), time(0)),)})
    assert starts(late, date(2027, 3, 27)) == [
        "2027-03-27T22:00:00+00:00",
        "2027-03-27T23:00:00+00:00",
    ]


def test_blocked_days_have_no_slots() -> None:
    """A blocked day has no slots; the same weekday a week later does."""
    blocked = consultant(blocked=frozenset({date(2027, 1, 4)}))
    assert blocked.slot_starts(date(2027, 1, 4)) == []
    assert blocked.slot_starts(date(2027, 1, 11)) != []


def test_works_at_accepts_only_slot_starts_in_hours() -> None:
    """works_at is true for slot starts inside the hours only (the window's end is not one)."""
    c = consultant()
    assert c.works_at(datetime(2027, 1, 4, 9, tzinfo=UTC))
    assert not c.works_at(datetime(2027, 1, 4, 12, tzinfo=UTC))  # the window's end
    assert not c.works_at(datetime(2027, 1, 5, 9, tzinfo=UTC))  # a Tuesday
    assert c.works_at(datetime(2027, 3, 28, 1, tzinfo=UTC))  # 02:00 BST


def test_who_serves_what() -> None:
    """A consultant serves their types, showroom and specialisations, nothing else."""
    kitchen = consultant("k", specialisations=KITCHEN)
    both = consultant("b")
    showroom = AppointmentType.SHOWROOM
    assert kitchen.serves(showroom, "leeds", Category.KITCHEN)
    assert not kitchen.serves(showroom, "leeds", Category.BEDROOM)
    assert not kitchen.serves(showroom, "leeds", Category.BOTH)
    assert both.serves(showroom, "leeds", Category.BOTH)
    assert not both.serves(showroom, "manchester", Category.KITCHEN)
    assert both.serves(AppointmentType.ONLINE, None, Category.KITCHEN)


def test_candidates_rotate_so_concurrent_bookings_spread() -> None:
    """'Any consultant' candidates rotate, so concurrent bookings try different people first."""
    roster = Roster(frozenset({"leeds"}), (consultant("a"), consultant("b"), consultant("c")))
    at = datetime(2027, 1, 4, 9, tzinfo=UTC)
    online, kitchen = AppointmentType.ONLINE, Category.KITCHEN
    orders = {
        tuple(c.id for c in roster.candidates(online, None, kitchen, at, n)) for n in range(3)
    }
    assert orders == {("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b")}


def test_free_slots_leave_out_booked_and_past_ones() -> None:
    """Free slots leave out booked and past ones."""
    roster = Roster(frozenset({"leeds"}), (consultant("a"), consultant("b")))
    monday = date(2027, 1, 4)
    nine, ten = (datetime(2027, 1, 4, h, tzinfo=UTC) for h in (9, 10))
    free = roster.free_slots(
        AppointmentType.SHOWROOM,
        "leeds",
        Category.KITCHEN,
        monday,
        monday,
        booked={("a", ten)},
        now=nine,
    )
    assert [(s.consultant_id, s.start.hour) for s in free] == [("b", 10), ("a", 11), ("b", 11)]
    assert all(s.showroom_id == "leeds" for s in free)
