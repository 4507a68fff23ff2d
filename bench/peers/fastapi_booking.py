"""The booking peer: ``POST /v1/appointments`` on FastAPI + uvicorn + asyncpg + redis.asyncio.

    DATABASE_URL=postgresql://... REDIS_URL=redis://... REDIS_PREFIX=bench:x: \\
        uvicorn bench.peers.fastapi_booking:app --loop uvloop --http httptools

The work a straightforward implementation does for one booking, nothing more, nothing
less (bench/booking.py drives it next to ours and pgbench):

1. pydantic validates the body (FastAPI's way) with the rules ours applies (fields,
   patterns, lengths, no unknown fields); ``Idempotency-Key`` is required;
2. ``start`` is on the hour, in the future and within the horizon; the consultant
   exists, has the category's specialisations and works that hour (the schedule is
   read once at startup; London local time through zoneinfo);
3. a Redis slot lock, ``SET slot:{consultant}:{epoch} <key> NX PX 10000``, held by
   another request -> 409. Its value is the Idempotency-Key and a retry with the same
   key may go on (else a retry within 10 s could never get its stored answer): one
   small script, still one round trip, as ours does it;
4. id (uuid4), reference (``LW-`` + 8 random Crockford base32 characters), manage
   token (``secrets.token_urlsafe(24)``, only its SHA-256 stored);
5. one transaction: claim the idempotency key (a known key returns the stored
   response), insert the appointment (the EXCLUDE constraint decides: nothing
   inserted -> 409 slot_taken), store the response, and for a booking add the
   confirmation to the outbox.

The lock is left to expire after a booking (no release round trip), as ours does.
Not here: ours' "any consultant" bookings (the bench always names one), its
availability cache (and invalidating it) and its Postgres-down path.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import asyncpg
import redis.asyncio as aioredis
from fastapi import FastAPI, Header, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

LONDON = ZoneInfo("Europe/London")
SLOT = timedelta(hours=1)
HORIZON = timedelta(days=180)  # BookingSettings.horizon_days
LOCK_MS = 10_000  # BookingSettings.lock_s
POOL_MAX = 10  # DatabaseSettings.pool_max_size
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
MIDNIGHT = time(0, 0)
JSON = "application/json"

LOAD_CONSULTANTS = """
SELECT id, showroom_id, specialisations FROM consultants WHERE active
"""
LOAD_HOURS = "SELECT consultant_id, weekday, starts, ends FROM consultant_hours"
LOAD_BLOCKED = "SELECT consultant_id, day FROM consultant_blocked_days"
CLAIM_KEY = """
INSERT INTO idempotency_keys (key, request_hash, status, response) VALUES ($1, $2, 0, '')
ON CONFLICT DO NOTHING RETURNING key
"""
READ_KEY = "SELECT request_hash, status, response FROM idempotency_keys WHERE key = $1"
INSERT_APPOINTMENT = """
INSERT INTO appointments (id, reference, type, category, status, consultant_id, showroom_id,
    starts_at, ends_at, customer_name, customer_email, customer_phone, customer_postcode,
    customer_address, notes, manage_token_hash)
VALUES ($1, $2, $3, $4, 'CONFIRMED', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT DO NOTHING RETURNING id
"""
STORE_RESPONSE = "UPDATE idempotency_keys SET status = $2, response = $3 WHERE key = $1"
ADD_TO_OUTBOX = """
INSERT INTO outbox (job_id, queue, kind, payload)
VALUES ($1, 'notifications', 'appointment.confirmed', $2::jsonb)
"""

# SET NX, or the lock is already this request's (a retry): one round trip either way.
LOCK = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
"""

SLOT_TAKEN = json.dumps(
    {"error": {"code": "slot_taken", "message": "That slot has just been booked."}}
)


class Customer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str = Field(pattern=r"^\+?[0-9 ()-]{7,20}$")
    postcode: str = Field(pattern=r"^(?i:[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2})$")
    address: str | None = Field(default=None, min_length=1, max_length=500)


class BookingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["HOME_MEASUREMENT", "ONLINE", "SHOWROOM"]
    category: Literal["KITCHEN", "BEDROOM", "BOTH"]
    start: AwareDatetime
    consultant_id: str = Field(min_length=1, max_length=64)
    showroom_id: str | None = Field(default=None, max_length=64)
    customer: Customer
    notes: str | None = Field(default=None, max_length=2000)


class Booked(BaseModel):
    id: uuid.UUID
    reference: str
    status: str
    type: str
    category: str
    consultant_id: str
    showroom_id: str | None
    start: str
    end: str
    customer: Customer
    notes: str | None
    manage_token: str


@dataclass(frozen=True, slots=True)
class Consultant:
    showroom_id: str
    specialisations: frozenset[str]
    hours: dict[int, list[tuple[time, time]]]
    blocked: frozenset[date]

    def works_at(self, start: datetime) -> bool:
        day = start.astimezone(LONDON).date()
        if day in self.blocked:
            return False
        for first, last in self.hours.get(day.weekday(), ()):
            opens = datetime.combine(day, first, tzinfo=LONDON)
            closes = datetime.combine(
                day + timedelta(days=1) if last == MIDNIGHT else day, last, tzinfo=LONDON
            )
            if opens <= start and start + SLOT <= closes:
                return True
        return False


async def load_schedule(pool: asyncpg.Pool) -> dict[str, Consultant]:
    async with pool.acquire() as connection:
        consultants = await connection.fetch(LOAD_CONSULTANTS)
        hours = await connection.fetch(LOAD_HOURS)
        blocked = await connection.fetch(LOAD_BLOCKED)
    windows: dict[str, dict[int, list[tuple[time, time]]]] = {}
    for row in hours:
        windows.setdefault(row["consultant_id"], {}).setdefault(row["weekday"], []).append(
            (row["starts"], row["ends"])
        )
    days: dict[str, set[date]] = {}
    for row in blocked:
        days.setdefault(row["consultant_id"], set()).add(row["day"])
    return {
        row["id"]: Consultant(
            row["showroom_id"],
            frozenset(row["specialisations"]),
            windows.get(row["id"], {}),
            frozenset(days.get(row["id"], ())),
        )
        for row in consultants
    }


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(
        os.environ["DATABASE_URL"], min_size=1, max_size=POOL_MAX
    )
    app.state.redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    app.state.lock = app.state.redis.register_script(LOCK)
    app.state.prefix = os.environ["REDIS_PREFIX"]
    app.state.schedule = await load_schedule(app.state.pool)
    yield
    await app.state.redis.aclose()
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


def problem(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status_code=status, media_type=JSON)


def reference() -> str:
    return "LW-" + "".join(secrets.choice(CROCKFORD) for _ in range(8))


@app.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@app.post("/v1/appointments", status_code=201)
async def book(
    body: BookingRequest,
    request: Request,
    idempotency_key: Annotated[str, Header(pattern=r"^[\x21-\x7e]{1,255}$")],
) -> Response:
    if body.type == "SHOWROOM" and body.showroom_id is None:
        return problem(422, "missing_field", "showroom_id: required for SHOWROOM.")
    if body.type == "HOME_MEASUREMENT" and body.customer.address is None:
        return problem(422, "missing_field", "customer.address: required for a home visit.")
    start = body.start.astimezone(UTC)
    if start.minute or start.second or start.microsecond:
        return problem(422, "invalid_slot", "A slot starts on the hour.")
    now = datetime.now(UTC)
    if start <= now:
        return problem(422, "slot_in_past", "That slot has already started.")
    if start > now + HORIZON:
        return problem(422, "beyond_horizon", "That slot is too far ahead.")
    consultant = app.state.schedule.get(body.consultant_id)
    if consultant is None:
        return problem(404, "consultant_not_found", "No such consultant.")
    needs = {"KITCHEN", "BEDROOM"} if body.category == "BOTH" else {body.category}
    if not needs <= consultant.specialisations or not consultant.works_at(start):
        return problem(409, "slot_unavailable", "The consultant does not work then.")
    if body.type == "SHOWROOM" and body.showroom_id not in (None, consultant.showroom_id):
        return problem(409, "slot_unavailable", "The consultant is not at that showroom.")

    lock = f"{app.state.prefix}slot:{body.consultant_id}:{int(start.timestamp())}"
    if not await app.state.lock(keys=[lock], args=[idempotency_key, LOCK_MS]):
        return Response(SLOT_TAKEN, status_code=409, media_type=JSON)

    appointment_id = uuid.uuid4()
    token = secrets.token_urlsafe(24)
    end = start + SLOT
    compact = body.customer.postcode.replace(" ", "").upper()
    # Validated already: built, not checked again (ours builds a plain struct too).
    customer = Customer.model_construct(
        name=body.customer.name.strip(),
        email=body.customer.email.strip(),
        phone=body.customer.phone.strip(),
        postcode=f"{compact[:-3]} {compact[-3:]}",
        address=body.customer.address,
    )
    showroom_id = consultant.showroom_id if body.type == "SHOWROOM" else None
    booked = Booked.model_construct(
        id=appointment_id,
        reference=reference(),
        status="CONFIRMED",
        type=body.type,
        category=body.category,
        consultant_id=body.consultant_id,
        showroom_id=showroom_id,
        start=start.astimezone(LONDON).isoformat(),
        end=end.astimezone(LONDON).isoformat(),
        customer=customer,
        notes=body.notes,
        manage_token=token,
    )
    request_hash = hashlib.sha256(await request.body()).digest()
    async with app.state.pool.acquire() as connection, connection.transaction():
        if await connection.fetchval(CLAIM_KEY, idempotency_key, request_hash) is None:
            stored = await connection.fetchrow(READ_KEY, idempotency_key)
            if stored["request_hash"] != request_hash:
                return problem(422, "idempotency_key_reused", "Another request used that key.")
            if stored["status"] == 0:
                return problem(409, "request_in_progress", "That request is still running.")
            return Response(stored["response"], status_code=stored["status"], media_type=JSON)
        inserted = await connection.fetchval(
            INSERT_APPOINTMENT,
            appointment_id,
            booked.reference,
            body.type,
            body.category,
            body.consultant_id,
            showroom_id,
            start,
            end,
            customer.name,
            customer.email,
            customer.phone,
            customer.postcode,
            customer.address,
            body.notes,
            hashlib.sha256(token.encode()).digest(),
        )
        if inserted is None:
            await connection.execute(STORE_RESPONSE, idempotency_key, 409, SLOT_TAKEN)
            return Response(SLOT_TAKEN, status_code=409, media_type=JSON)
        text = booked.model_dump_json()
        await connection.execute(STORE_RESPONSE, idempotency_key, 201, text)
        payload = json.dumps({"appointment_id": str(appointment_id), "reference": booked.reference})
        await connection.execute(ADD_TO_OUTBOX, uuid.uuid4().hex, payload)
    return Response(text, status_code=201, media_type=JSON)
