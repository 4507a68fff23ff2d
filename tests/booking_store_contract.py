"""The ``BookingStore`` contract: what the booking actors rely on, whatever the store.

``BookingStoreContract`` is inherited by a test class whose ``store_factory``
fixture opens a fresh, empty store of one implementation (seeded with the demo
consultants ``grace-okafor`` and ``daniel-price``) together with a reader of the jobs
its outbox holds (kinds, in order). tests/test_booking_store_contract.py runs it on
``PostgresBookingStore`` (real Postgres) and on ``MemoryBookingStore``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import trio

from actors._booking_effects import notice
from adapters import (
    Booked,
    BookingStore,
    KeyReplay,
    LimitReached,
    NewBooking,
    OutboxJob,
    SlotTaken,
)


@dataclass(frozen=True, slots=True)
class StoreUnderTest:
    store: BookingStore
    outbox: Callable[[], Awaitable[list[str]]]  # the job ids written, in order


type StoreFactory = Callable[[], AbstractAsyncContextManager[StoreUnderTest]]

# Far enough ahead to stay "future" for the cap, whatever today is.
START = (datetime.now(UTC) + timedelta(days=30)).replace(minute=0, second=0, microsecond=0)


def new_booking(
    start: datetime = START,
    *,
    candidates: tuple[str, ...] = ("grace-okafor",),
    email: str = "ada@example.com",
    phone: str = "+44 7700 900123",
    key: str | None = None,
) -> NewBooking:
    return NewBooking(
        id=str(uuid.uuid4()),
        reference="LW-TEST-0001",
        kind="SHOWROOM",
        category="KITCHEN",
        candidates=candidates,
        showroom_id="leeds",
        start=start,
        end=start + timedelta(hours=1),
        customer_name="Ada",
        customer_email=email,
        customer_phone=phone,
        customer_postcode="LS1 6HD",
        customer_address=None,
        notes=None,
        token_hash=hashlib.sha256(b"t").digest(),
        idempotency_key=key or f"appointments:{uuid.uuid4().hex}",
        request_hash=b"h" * 32,
    )


def render(booking: NewBooking, outcome: Booked | SlotTaken) -> tuple[int, str]:
    if isinstance(outcome, SlotTaken):
        return 409, '{"error": "slot_taken"}'
    return 201, f'{{"id": "{booking.id}", "consultant": "{outcome.consultant_id}"}}'


def confirmed(booking: NewBooking) -> OutboxJob:
    return notice("appointment.confirmed", booking.id)


async def book(store: BookingStore, *batch: NewBooking, cap: int = 5) -> list[object]:
    return list(await store.book(batch, render, confirmed, max_active_per_customer=cap))


class BookingStoreContract:
    async def test_a_booking_takes_its_first_free_candidate_and_is_announced(
        self, store_factory: StoreFactory
    ) -> None:
        """Booked with the first free candidate; its notice is in the outbox."""
        first = new_booking(candidates=("grace-okafor", "daniel-price"))
        second = new_booking(candidates=("grace-okafor", "daniel-price"), email="b@example.com")
        async with store_factory() as s:
            assert await book(s.store, first) == [Booked("grace-okafor")]
            assert await book(s.store, second) == [Booked("daniel-price")]
            fetched = await s.store.fetch(first.id)
            jobs = await s.outbox()
        assert fetched is not None
        assert (fetched.status, fetched.consultant_id, fetched.start) == (
            "CONFIRMED",
            "grace-okafor",
            START,
        )
        assert jobs == [confirmed(first).job_id, confirmed(second).job_id]

    async def test_one_slot_is_booked_once_even_within_one_batch(
        self, store_factory: StoreFactory
    ) -> None:
        """Two bookings of one consultant-slot in one batch: one Booked, one SlotTaken."""
        a, b = new_booking(), new_booking(email="b@example.com")
        async with store_factory() as s:
            outcomes = await book(s.store, a, b)
            jobs = await s.outbox()
        assert sorted(map(repr, outcomes)) == sorted(
            [repr(Booked("grace-okafor")), repr(SlotTaken())]
        )
        assert len(jobs) == 1

    async def test_a_key_seen_before_replays_its_stored_answer(
        self, store_factory: StoreFactory
    ) -> None:
        """The same key again (any body) gets the first answer, not a second booking."""
        first = new_booking()
        again = dataclasses.replace(
            new_booking(START + timedelta(hours=2), key=first.idempotency_key),
            request_hash=b"x" * 32,
        )
        async with store_factory() as s:
            await book(s.store, first)
            [replay] = await book(s.store, again)
            assert await s.store.fetch(again.id) is None
        assert isinstance(replay, KeyReplay)
        assert (replay.request_hash, replay.status) == (b"h" * 32, 201)
        assert first.id in replay.response

    async def test_a_slot_taken_answer_is_stored_under_its_key_too(
        self, store_factory: StoreFactory
    ) -> None:
        """A refusal by the store is an answer: its retry gets the 409 again."""
        winner, loser = new_booking(), new_booking(email="b@example.com")
        async with store_factory() as s:
            await book(s.store, winner)
            assert await book(s.store, loser) == [SlotTaken()]
            [replay] = await book(s.store, loser)
        assert isinstance(replay, KeyReplay)
        assert replay.status == 409

    async def test_the_cap_counts_a_customer_by_email_and_by_phone(
        self, store_factory: StoreFactory
    ) -> None:
        """Past the cap by e-mail (any case) or by phone digits: LimitReached, nothing
        kept under its key (a retry decides afresh)."""
        hours = [START + timedelta(hours=h) for h in range(3)]
        async with store_factory() as s:
            assert await book(s.store, new_booking(hours[0]), cap=1) == [Booked("grace-okafor")]
            by_email = new_booking(hours[1], email="ADA@Example.com", phone="0113 111 1111")
            by_phone = new_booking(hours[2], email="other@example.com", phone="+447700900123")
            assert await book(s.store, by_email, by_phone, cap=1) == [LimitReached()] * 2
            # Not stored: with room again (a higher cap), the same key books.
            assert await book(s.store, by_email, cap=2) == [Booked("grace-okafor")]

    async def test_cancel_frees_the_slot_and_is_announced_once(
        self, store_factory: StoreFactory
    ) -> None:
        """Cancel: CANCELLED with its reason, the slot bookable again, one notice even
        if cancelled twice."""
        first = new_booking()
        cancelled = notice("appointment.cancelled", first.id, reason="r")
        async with store_factory() as s:
            await book(s.store, first)
            after = await s.store.cancel(first.id, "r", cancelled)
            again = await s.store.cancel(first.id, "r", cancelled)
            rebooked = await book(s.store, new_booking(email="b@example.com"))
            missing = await s.store.cancel(str(uuid.uuid4()), "r", cancelled)
            jobs = await s.outbox()
        assert after is not None
        assert again is not None
        assert (after.status, after.status_reason) == ("CANCELLED", "r")
        assert rebooked == [Booked("grace-okafor")]
        assert missing is None
        assert jobs.count(cancelled.job_id) == 1

    async def test_reschedule_moves_to_a_free_candidate_or_refuses(
        self, store_factory: StoreFactory
    ) -> None:
        """A move to a free slot: RESCHEDULED with the previous start, announced; to a
        taken one: SlotTaken and unchanged; an inactive one is returned unchanged."""
        moving, blocker = new_booking(), new_booking(START + timedelta(hours=3), email="b@x.io")
        later, taken = START + timedelta(hours=1), START + timedelta(hours=3)
        moved_notice = notice("appointment.rescheduled", moving.id, version="1")
        async with store_factory() as s:
            await book(s.store, moving, blocker)
            moved = await s.store.reschedule(
                moving.id, ["grace-okafor"], later, later + timedelta(hours=1), moved_notice
            )
            refused = await s.store.reschedule(
                moving.id, ["grace-okafor"], taken, taken + timedelta(hours=1), moved_notice
            )
            busy = await s.store.booked_between(START, START + timedelta(hours=6))
            await s.store.cancel(blocker.id, "r", notice("appointment.cancelled", blocker.id))
            inactive = await s.store.reschedule(
                blocker.id, ["grace-okafor"], later, later + timedelta(hours=1), moved_notice
            )
            jobs = await s.outbox()
        assert not isinstance(moved, SlotTaken)
        assert moved is not None
        assert (moved.status, moved.start, moved.previous_start) == ("RESCHEDULED", later, START)
        assert refused == SlotTaken()
        assert busy == {("grace-okafor", later), ("grace-okafor", taken)}
        assert not isinstance(inactive, SlotTaken)
        assert inactive is not None
        assert inactive.status == "CANCELLED"
        assert jobs.count(moved_notice.job_id) == 1

    async def test_a_replayed_booking_is_written_once_or_finds_its_slot_taken(
        self, store_factory: StoreFactory
    ) -> None:
        """write_replayed: Booked with its answer kept; again: the existing status; a
        slot taken meanwhile: SlotTaken and nothing written, then record_lost keeps it
        CANCELLED with the reason, once."""
        pending, rival = new_booking(), new_booking(START + timedelta(hours=1))
        late = new_booking(START + timedelta(hours=1), email="late@example.com")
        lost = notice("appointment.cancelled", late.id, reason="lost")
        async with store_factory() as s:
            ok = notice("appointment.confirmed", pending.id)
            assert await s.store.write_replayed(pending, "grace-okafor", 202, "{}", ok) == (
                Booked("grace-okafor")
            )
            assert await s.store.write_replayed(pending, "grace-okafor", 202, "{}", ok) == (
                "CONFIRMED"
            )
            [replay] = await book(s.store, pending)  # its key was kept with its answer
            await book(s.store, rival)
            late_ok = notice("appointment.confirmed", late.id)
            assert await s.store.write_replayed(late, "grace-okafor", 202, "{}", late_ok) == (
                SlotTaken()
            )
            assert await s.store.fetch(late.id) is None
            assert await s.store.record_lost(late, "grace-okafor", "lost", lost) == "CANCELLED"
            assert await s.store.record_lost(late, "grace-okafor", "lost", lost) == "CANCELLED"
            kept = await s.store.fetch(late.id)
            jobs = await s.outbox()
        assert isinstance(replay, KeyReplay)
        assert replay.status == 202
        assert kept is not None
        assert (kept.status, kept.status_reason) == ("CANCELLED", "lost")
        assert jobs.count(lost.job_id) == 1
        assert late_ok.job_id not in jobs

    async def test_old_idempotency_keys_are_forgotten(self, store_factory: StoreFactory) -> None:
        """forget_keys drops keys older than the window and keeps the rest."""
        async with store_factory() as s:
            await book(s.store, new_booking())
            kept = await s.store.forget_keys(3600)
            await trio.sleep(0.05)
            forgotten = await s.store.forget_keys(0.01)
        assert (kept, forgotten) == (0, 1)
