"""Booking confirmations reach the customer through real provider servers on loopback:
SES v2 (moto), SMTP (aiosmtpd), Twilio and MSG91 (tests/_providers.py), through the
whole tree (HTTP, outbox, relay, Redis queue, worker, sender actors, notifier)."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trio_asyncio

from actors import gsm_length
from adapters import open_redis
from config import (
    EmailSettings,
    Msg91Settings,
    SesSettings,
    Settings,
    SmtpSettings,
    TwilioSettings,
)
from jobs import RedisJobQueue
from tests._booking import (
    book,
    booking_body,
    eventually,
    local,
    next_weekday,
    prepare_database,
    running_tree,
)
from tests._providers import Msg91Fake, SesFake, SmtpFake, TwilioFake, running
from tests.conftest import fetch

SENDER = "Lomash Wood <appointments@lomashwood.test>"
ADMIN = "admin-token-for-the-notifier-tests"
SID, TOKEN, MSG91_KEY = "AC" + "1" * 32, "twilio-token", "msg91-key"


@pytest.fixture(scope="module")
def ses() -> Iterator[SesFake]:
    with SesFake() as fake:
        fake.verify(SENDER)
        yield fake


@dataclasses.dataclass
class Providers:
    ses: SesFake
    smtp: SmtpFake
    twilio: TwilioFake
    msg91: Msg91Fake


@pytest.fixture
def providers(ses: SesFake) -> Iterator[Providers]:
    ses.ok()
    ses.requests.clear()
    smtp, twilio, msg91 = SmtpFake(), TwilioFake(SID, TOKEN), Msg91Fake(MSG91_KEY)
    with running(smtp, twilio, msg91):
        yield Providers(ses, smtp, twilio, msg91)
    ses.ok()


def configured(settings: Settings, p: Providers) -> Settings:
    return dataclasses.replace(
        settings,
        admin_token=ADMIN,
        jobs=dataclasses.replace(settings.jobs, queues="bookings,notifications"),
        email=EmailSettings(sender=SENDER),
        ses=SesSettings(
            region=p.ses.region,
            endpoint_url=p.ses.url,
            access_key_id="test",
            secret_access_key="test",
            timeout_s=1.0,
            backoff_s=0.05,
        ),
        smtp=SmtpSettings(url=p.smtp.url, timeout_s=2.0),
        twilio=TwilioSettings(
            account_sid=SID,
            auth_token=TOKEN,
            sender="+447700900000",
            api_base=p.twilio.url,
            timeout_s=1.0,
        ),
        msg91=Msg91Settings(
            auth_key=MSG91_KEY, template_id="tmpl-1", api_base=p.msg91.url, timeout_s=1.0
        ),
    )


@asynccontextmanager
async def tree(settings: Settings, p: Providers) -> AsyncIterator[httpx.AsyncClient]:
    assert settings.database.url is not None
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(configured(settings, p)) as client:
            yield client


async def booked(client: httpx.AsyncClient, *, hour: int = 10) -> tuple[str, str]:
    """A booking for a customer of this test's own: (reference, email address)."""
    email = f"ada-{secrets.token_hex(4)}@example.com"
    customer = {
        "name": "Ada Lovelace",
        "email": email,
        "phone": "+44 7700 900123",
        "postcode": "LS1 6HD",
    }
    start = local(next_weekday(1), hour)
    response = await book(client, booking_body(start, customer=customer))
    assert response.status_code == 201, response.text
    return response.json()["reference"], email


async def log_of(client: httpx.AsyncClient, reference: str) -> list[dict[str, Any]]:
    response = await client.get(
        "/admin/notifications",
        params={"reference": reference},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["logs"]
    return rows


def to(p: Providers, email: str) -> list[dict[str, Any]]:
    return [m for m in p.ses.sent() if email in m["destinations"]["ToAddresses"]]


async def test_a_booking_is_confirmed_by_ses_email_and_twilio_sms_once(
    settings: Settings, providers: Providers
) -> None:
    """The email (subject with the reference, London time with the day, the showroom,
    a manage link) via SES, the SMS via Twilio under 160 characters, each once; the log
    shows both SENT with masked recipients."""
    async with tree(settings, providers) as client:
        reference, email = await booked(client)
        [sent] = await eventually(lambda: _ready(to(providers, email)))
        await eventually(lambda: _ready(providers.twilio.messages))
        rows = await eventually(lambda: _sent_rows(client, reference, 2))
        await trio.sleep(0.5)  # nothing more arrives
        assert len(to(providers, email)) == 1
        assert len(providers.twilio.messages) == 1
    assert reference in sent["subject"]
    assert "confirmed" in sent["subject"]
    assert "(London time)" in sent["body"]
    assert "Leeds" in sent["body"]
    assert "/appointments/" in sent["body"]
    assert "token=" in sent["body"]
    [sms] = providers.twilio.messages
    assert sms["to"] == "+447700900123"
    assert reference in sms["body"]
    assert (gsm_length(sms["body"]) or 999) <= 160  # one GSM-7 segment
    assert not providers.smtp.messages
    assert not providers.msg91.messages
    assert {(r["channel"], r["provider"], r["status"]) for r in rows} == {
        ("email", "ses", "SENT"),
        ("sms", "twilio", "SENT"),
    }
    assert {r["recipient"] for r in rows} == {"a***@example.com", "+44*******123"}


async def test_the_notification_log_needs_the_admin_token_and_a_reference(
    settings: Settings, providers: Providers
) -> None:
    """No token: 401; no reference or one too long: 422 ``invalid_field``; an unknown
    reference: an empty log."""
    async with tree(settings, providers) as client:
        bearer = {"Authorization": f"Bearer {ADMIN}"}
        anonymous = await client.get("/admin/notifications", params={"reference": "LW-1"})
        missing = await client.get("/admin/notifications", headers=bearer)
        long = await client.get(
            "/admin/notifications", params={"reference": "x" * 65}, headers=bearer
        )
        unknown = await client.get(
            "/admin/notifications", params={"reference": "LW-NONE"}, headers=bearer
        )
        failed = await client.get("/admin/notifications/failed", headers=bearer)
    assert anonymous.status_code == 401
    assert (missing.status_code, missing.json()["error"]["code"]) == (422, "invalid_field")
    assert long.status_code == 422
    assert unknown.json() == {"reference": "LW-NONE", "logs": []}
    assert failed.json() == {"failed": []}


async def _ready(items: list[Any]) -> list[Any]:
    return items


async def _sent_rows(client: httpx.AsyncClient, reference: str, count: int) -> Any:
    rows = await log_of(client, reference)
    return rows if sum(r["status"] == "SENT" for r in rows) >= count else None


async def test_ses_503_is_tried_three_times_then_smtp_delivers(
    settings: Settings, providers: Providers
) -> None:
    """SES answers 503: three attempts (RETRYING rows), then the SMTP server gets it."""
    providers.ses.unavailable()
    async with tree(settings, providers) as client:
        reference, email = await booked(client)
        await eventually(lambda: _ready(providers.smtp.messages))
        rows = await eventually(lambda: _sent_rows(client, reference, 2))
    [message] = providers.smtp.messages
    assert message["To"] == email
    assert reference in message["Subject"]
    assert message.get_body(("html",)) is not None
    assert message.get_body(("plain",)) is not None
    assert [m for _, _, m in providers.ses.requests] == ["fail"] * 3
    email_rows = [(r["provider"], r["status"]) for r in rows if r["channel"] == "email"]
    assert email_rows == [("ses", "RETRYING")] * 3 + [("smtp", "SENT")]
    assert not to(providers, email)


async def test_both_email_providers_down_dead_letters_then_the_retry_delivers(
    settings: Settings, providers: Providers
) -> None:
    """SES 503 and SMTP refusing connections: the email is kept with its 4 attempts'
    errors (PENDING); the SMS still goes. SMTP back: the retry job delivers it, once."""
    providers.ses.unavailable()
    providers.smtp.down()
    async with tree(settings, providers) as client:
        reference, email = await booked(client)
        url = settings.database.url
        assert url is not None

        async def kept() -> Any:
            rows = await fetch(url, "SELECT status, attempts FROM failed_messages")
            return rows or None

        [row] = await eventually(kept)
        assert row["status"] == "PENDING"
        await eventually(lambda: _ready(providers.twilio.messages))
        providers.smtp.up()
        async with open_redis(settings.redis, cleanup_s=1.0) as cache:
            queue = RedisJobQueue(cache, prefix="jobs")
            await queue.enqueue("notifications", "notifications.retry_failed", {})

        async def delivered() -> Any:
            rows = await fetch(url, "SELECT status, retries FROM failed_messages")
            return rows if rows[0]["status"] == "DELIVERED" else None

        [done] = await eventually(delivered)
        rows = await log_of(client, reference)
    assert '"provider": "smtp"' in row["attempts"]
    assert row["attempts"].count('"provider": "ses"') == 3
    assert done["retries"] == 1
    [message] = providers.smtp.messages
    assert message["To"] == email
    email_rows = [(r["provider"], r["status"]) for r in rows if r["channel"] == "email"]
    assert email_rows[-1] == ("smtp", "SENT")
    assert email_rows.count(("smtp", "SENT")) == 1


async def test_twilio_500_is_retried_once_then_msg91_sends_it(
    settings: Settings, providers: Providers
) -> None:
    """Twilio 500 twice (the attempt and its one retry), then MSG91 takes the SMS."""
    providers.twilio.fail(500)
    async with tree(settings, providers) as client:
        reference, _ = await booked(client)
        [sms] = await eventually(lambda: _ready(providers.msg91.messages))
        rows = await eventually(lambda: _sent_rows(client, reference, 2))
    assert [m for _, _, m in providers.twilio.requests] == ["fail", "fail"]
    [recipient] = sms["recipients"]
    assert recipient["mobiles"] == "447700900123"
    assert reference in recipient["message"]
    sms_rows = [(r["provider"], r["status"]) for r in rows if r["channel"] == "sms"]
    assert sms_rows == [("twilio", "RETRYING"), ("twilio", "RETRYING"), ("msg91", "SENT")]


async def test_both_sms_providers_down_is_a_failed_row_and_the_email_still_goes(
    settings: Settings, providers: Providers
) -> None:
    providers.twilio.fail(503)
    providers.msg91.fail(500, {"type": "error", "message": "down"})
    async with tree(settings, providers) as client:
        reference, email = await booked(client)
        await eventually(lambda: _ready(to(providers, email)))

        async def sms_failed() -> Any:
            rows = await log_of(client, reference)
            return [r for r in rows if r["channel"] == "sms" and r["status"] == "FAILED"]

        [failed] = await eventually(sms_failed)
        url = settings.database.url
        assert url is not None
        assert await fetch(url, "SELECT 1 FROM failed_messages") == []
    assert failed["provider"] == "msg91"
    assert "UpstreamError" in failed["error"]
    assert len(providers.twilio.requests) == 2
    assert len(providers.msg91.requests) == 1


async def test_a_stalling_ses_times_out_trips_its_breaker_and_smtp_takes_the_rest(
    settings: Settings, providers: Providers
) -> None:
    """SES accepts connections and never answers: the first emails pay its timeouts
    until its breaker opens (fewer SES requests than 3 per email), every one arrives by
    SMTP, and an email after that goes straight to SMTP without touching SES."""
    providers.ses.stall()
    count = 4
    async with tree(settings, providers) as client:
        references = []
        for n in range(count):
            reference, _ = await booked(client, hour=10 + n)
            references.append(reference)
        await eventually(lambda: _count(providers.smtp.messages, count), within_s=60.0)
        ses_requests = len(providers.ses.requests)
        late, _ = await booked(client, hour=15)
        await eventually(lambda: _count(providers.smtp.messages, count + 1), within_s=10.0)
        rows = [r for ref in references for r in await log_of(client, ref)]
        late_rows = await log_of(client, late)
    assert ses_requests < 3 * count  # without the breaker: 3 per email
    assert len(providers.ses.requests) == ses_requests
    errors = {r["error"].split(":")[0] for r in rows if r["provider"] == "ses"}
    assert errors == {"OperationTimeout", "ServiceUnavailable"}
    late_email = [
        (r["provider"], r["status"], r["error"]) for r in late_rows if r["channel"] == "email"
    ]
    assert late_email[0][:2] == ("ses", "RETRYING")
    assert late_email[0][2].startswith("ServiceUnavailable")
    assert late_email[1][:2] == ("smtp", "SENT")


async def _count(items: list[Any], count: int) -> bool:
    return len(items) >= count
