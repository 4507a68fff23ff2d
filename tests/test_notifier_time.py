"""The email retry window on trio's virtual clock: a day of 15-minute retries in
milliseconds, at exact times.

The real pieces run together: the Scheduler's quarter-hour cron (London time), the
MemoryJobQueue, a JobWorker, the SES and SMTP sender actors (their breakers and
retries) and the Notifier, with the in-process notification store. Only the two
providers are scripted in process (real sockets and a virtual clock do not mix: the
loopback servers are in tests/test_notifier.py): each refuses with the same
``UpstreamError(503)`` its adapter raises for a 503, until a given virtual time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.lowlevel
import trio.testing

from actors import Notifier, Providers, provider_retry, sender_spec
from adapters import (
    AppointmentFacts,
    Email,
    LogStatus,
    MemoryNotificationStore,
    ShowroomFacts,
)
from config import (
    EmailSettings,
    JobSettings,
    NotificationSettings,
    RuntimeSettings,
    SchedulerSettings,
)
from jobs import (
    DeadLetterAlerts,
    JobWorker,
    MemoryJobQueue,
    MissedTicks,
    RunJob,
    Scheduler,
    spec_schedules,
)
from supervisors import ActorSpec, SupervisorSpec, UpstreamError, open_supervisor

# Tuesday 10:07:00 in winter (London is UTC): the first quarter-hour tick is 480 s later.
EPOCH = datetime(2030, 1, 8, 10, 7, tzinfo=UTC)
FIRST_TICK_S = 480.0
QUARTER_S = 900.0
DAY_S = 24 * 3600.0
APPOINTMENT = "0b7f8f55-3c55-4d0e-9b7a-5b1d2a9e0c11"
JOB_ID = f"appointment.confirmed:{APPOINTMENT}:0"


@dataclass(frozen=True, slots=True)
class WallClock:
    """Wall-clock time that is ``EPOCH`` at virtual time 0 and runs with trio's clock."""

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=trio.current_time())


@dataclass
class Scripted:
    """An email provider that answers 503 until ``down_until`` (virtual seconds)."""

    name: str
    down_until: float = float("inf")
    calls: list[float] = field(default_factory=list)
    accepted: list[tuple[float, Email]] = field(default_factory=list)

    async def send(self, email: Email) -> str:
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        self.calls.append(now)
        if now < self.down_until:
            raise UpstreamError(f"{self.name} answered 503", dependency=self.name, status=503)
        self.accepted.append((now, email))
        return f"{self.name}-{len(self.accepted)}"


def appointment() -> AppointmentFacts:
    start = EPOCH + timedelta(days=7)
    return AppointmentFacts(
        id=APPOINTMENT,
        reference="LW-4F7K2Q9M",
        kind="SHOWROOM",
        status="CONFIRMED",
        start=start,
        end=start + timedelta(hours=1),
        customer_name="Asha Patel",
        email="asha@example.com",
        phone="",
        showroom=ShowroomFacts("Lomash Wood Leeds", "1 Wharf Street", "Leeds", "LS2 7EQ"),
    )


async def run_a_day(
    ses: Scripted, smtp: Scripted, *, run_s: float
) -> tuple[MemoryNotificationStore, DeadLetterAlerts]:
    """Book at t=0 with both providers as scripted, then let the tree run ``run_s``."""
    runtime = RuntimeSettings()
    clock = WallClock()
    store = MemoryNotificationStore()
    store.appointments[APPOINTMENT] = appointment()
    alerts = DeadLetterAlerts(None, timeout_s=1.0)
    senders = [
        sender_spec(
            "ses-sender",
            lambda: ses,
            runtime,
            timeout_s=5.0,
            retry=provider_retry(3, 0.2),
            concurrency=4,
            clock=clock,
        ),
        sender_spec(
            "smtp-sender",
            lambda: smtp,
            runtime,
            timeout_s=10.0,
            retry=None,
            concurrency=4,
            clock=clock,
        ),
    ]
    notifier: ActorSpec[RunJob, str] = ActorSpec(
        "notifier",
        lambda: Notifier(
            store,
            Providers(email=[("ses", senders[0].ref), ("smtp", senders[1].ref)], sms=[]),
            NotificationSettings(),
            EmailSettings(),
            alerts,
            token_key=b"test",
            clock=clock,
            retry_budget_s=10.0,
            outage_retry_s=5.0,
        ),
        mailbox=dataclasses.replace(runtime.mailbox, message_timeout_s=60.0, ask_timeout_s=61.0),
    )
    queue = MemoryJobQueue()
    retry = next(s for s in spec_schedules() if s.kind == "notifications.retry_failed")
    assert retry.missed is MissedTicks.SKIP
    scheduler = Scheduler([retry], queue, clock=clock, settings=SchedulerSettings())
    jobs = JobSettings(poll_s=3600.0)
    handlers = {k: notifier.ref for k in ("appointment.confirmed", retry.kind)}
    worker = JobWorker("w", queue, "notifications", lambda: handlers, jobs, alerts, cleanup_s=1.0)
    async with open_supervisor(SupervisorSpec("root", [*senders, notifier])):
        await queue.enqueue(
            "notifications",
            "appointment.confirmed",
            {"appointment_id": APPOINTMENT},
            job_id=JOB_ID,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await nursery.start(worker.run)
            await trio.sleep(run_s)
            scheduler.request_stop(final=True)
            worker.request_stop(final=True)
    return store, alerts


def ticks(count: int) -> list[float]:
    return [FIRST_TICK_S + n * QUARTER_S for n in range(count)]


def started_at(calls: list[float]) -> list[float]:
    """The whole second each call fell in (a call runs a fraction after its tick)."""
    return [float(int(t)) for t in calls]


async def test_an_email_no_provider_takes_is_retried_96_times_then_failed_with_an_alert(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """SES and SMTP down all day: SES 3 attempts (0, 0.2, 0.6 s) then SMTP, dead letter;
    a retry at every quarter hour from 10:15 to 10:00 the next day (96 retries);
    at 10:15, 24 h after the first attempt, FAILED, one alert, nothing delivered."""
    ses, smtp = Scripted("ses"), Scripted("smtp")
    store, alerts = await run_a_day(ses, smtp, run_s=DAY_S + 2 * QUARTER_S)
    assert ses.calls[:3] == pytest.approx([0.0, 0.2, 0.6], abs=1e-9)
    assert smtp.calls[0] == pytest.approx(0.6, abs=1e-9)
    retried = smtp.calls[1:]
    assert len(retried) == 96
    assert started_at(retried) == ticks(96)
    assert retried[-1] < DAY_S <= FIRST_TICK_S + 96 * QUARTER_S
    failed = store.failed[JOB_ID]
    assert (failed.status, failed.retries) == ("FAILED", 96)
    assert failed.first_attempt_at == EPOCH
    assert failed.retry_until == EPOCH + timedelta(days=1)
    assert alerts.raised == 1
    final = [e for e in store.entries if e.status is LogStatus.FAILED]
    assert len(final) == 1
    assert final[0].attempted_at == EPOCH + timedelta(seconds=FIRST_TICK_S + 96 * QUARTER_S)
    assert not ses.accepted
    assert not smtp.accepted


async def test_the_first_retry_after_smtp_returns_delivers_it_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """SMTP back at 13:00 (3 h in): the 13:00 tick delivers it, SENT at that time, the
    dead letter DELIVERED after 11 failed retries, and no retry or alert after that."""
    back_s = 3 * 3600.0 - 7 * 60.0  # 13:00:00
    ses, smtp = Scripted("ses"), Scripted("smtp", down_until=back_s)
    store, alerts = await run_a_day(ses, smtp, run_s=DAY_S + 2 * QUARTER_S)
    [(at, email)] = smtp.accepted
    assert int(at) == back_s
    assert email.to == "asha@example.com"
    assert "LW-4F7K2Q9M" in email.subject
    assert started_at(smtp.calls[1:]) == ticks(12)  # 10:15 ... 13:00
    failed = store.failed[JOB_ID]
    assert (failed.status, failed.retries) == ("DELIVERED", 12)
    sent = [e for e in store.entries if e.status is LogStatus.SENT]
    assert [(e.provider, int((e.attempted_at - EPOCH).total_seconds())) for e in sent] == [
        ("smtp", int(back_s))
    ]
    assert await store.delivered(JOB_ID) == {"email"}
    assert alerts.raised == 0
