"""A `lomash serve` process SIGKILLed after a provider accepted a job's email: the
job is redelivered to another process, which sends the SMS and no second email."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import trio
import trio_asyncio

from tests._booking import eventually, prepare_database
from tests._providers import SesFake, TwilioFake
from tests.conftest import fetch
from tests.test_jobs_process import job_queue
from tests.test_process import BOUND_S, service

SENDER = "appointments@lomashwood.test"
SID, TOKEN = "AC" + "2" * 32, "twilio-token"

_APPOINTMENT = """
INSERT INTO appointments (id, reference, type, category, status, consultant_id, showroom_id,
    starts_at, ends_at, customer_name, customer_email, customer_phone, customer_postcode,
    manage_token_hash)
VALUES ($1, 'LW-KILL0001', 'SHOWROOM', 'KITCHEN', 'CONFIRMED', 'grace-okafor', 'leeds',
    $2, $3, 'Ada Lovelace', $4, '07700 900123', 'LS1 6HD', '\\x00')
"""


async def test_a_worker_killed_after_ses_accepted_sends_no_second_email(
    fresh_database_url: str, redis_url: str, redis_prefix: str
) -> None:
    appointment_id = str(uuid.uuid4())
    email = f"ada-{secrets.token_hex(4)}@example.com"
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=14)
    with SesFake() as ses, TwilioFake(SID, TOKEN) as twilio:
        ses.verify(SENDER)
        environment = {
            "LOMASH_DATABASE_URL": fresh_database_url,
            "LOMASH_REDIS_URL": redis_url,
            "LOMASH_REDIS_PREFIX": f"{redis_prefix}{secrets.token_hex(4)}:",
            "LOMASH_JOBS_QUEUES": "notifications",
            "LOMASH_JOBS_LEASE_S": "2",
            "LOMASH_JOBS_HEARTBEAT_S": "0.5",
            "LOMASH_JOBS_POLL_S": "0.2",
            "LOMASH_EMAIL_FROM": SENDER,
            "LOMASH_SES_REGION": ses.region,
            "LOMASH_SES_ENDPOINT_URL": ses.url,
            "LOMASH_SES_ACCESS_KEY_ID": "test",
            "LOMASH_SES_SECRET_ACCESS_KEY": "test",
            "LOMASH_TWILIO_ACCOUNT_SID": SID,
            "LOMASH_TWILIO_AUTH_TOKEN": TOKEN,
            "LOMASH_TWILIO_FROM": "+447700900000",
            "LOMASH_TWILIO_API_BASE": twilio.url,
            "LOMASH_TWILIO_TIMEOUT_S": "30",
        }
        async with trio_asyncio.open_loop(), job_queue(environment) as queue:
            await prepare_database(fresh_database_url)
            await fetch(
                fresh_database_url,
                _APPOINTMENT,
                uuid.UUID(appointment_id),
                start,
                start + timedelta(hours=1),
                email,
            )
            twilio.stall()  # the SMS is in flight when the worker dies
            with trio.fail_after(BOUND_S):
                async with service(environment) as first:
                    await queue.enqueue(
                        "notifications",
                        "appointment.confirmed",
                        {"appointment_id": appointment_id},
                        job_id=f"appointment.confirmed:{appointment_id}:0",
                    )
                    await eventually(lambda: _some(twilio.requests))
                    first.process.kill()
                    await first.process.wait()
                twilio.ok()
                async with service(environment):
                    await eventually(lambda: _some(twilio.messages))
                    await trio.sleep(1.0)  # a second email would have been sent by now
            rows = await fetch(
                fresh_database_url,
                "SELECT channel, provider, status FROM notification_logs ORDER BY id",
            )
        sent = [m for m in ses.sent() if email in m["destinations"]["ToAddresses"]]
    assert len(sent) == 1
    assert [m["to"] for m in twilio.messages] == ["+447700900123"]
    assert [tuple(r) for r in rows] == [("email", "ses", "SENT"), ("sms", "twilio", "SENT")]


async def _some(items: Sequence[object]) -> bool:
    return bool(items)
