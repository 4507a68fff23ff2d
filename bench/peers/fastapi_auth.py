"""The accounts peer: FastAPI on uvicorn (uvloop, httptools), doing what our account
routes do and no more, against the same database and Redis:

- ``POST /v1/auth/login``: the GCRA decision (our script, per address and per
  account), the account's row, argon2id verify in a thread (the same parameters),
  the session written to Redis, an Ed25519 JWT signed;
- ``GET /v1/me``: the JWT verified (EdDSA only, the key by ``kid``) and the session's
  key checked in Redis;
- ``POST /v1/auth/refresh``: the GCRA decision and our rotation script.

DATABASE_URL=... REDIS_URL=... REDIS_PREFIX=... uvicorn bench.peers.fastapi_auth:app
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import jwt
import redis.asyncio as aioredis
from argon2 import PasswordHasher, Type
from argon2.exceptions import VerificationError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Header, HTTPException, Request
from pydantic import BaseModel

from adapters._rate_limit import _GCRA
from adapters._sessions import _ROTATE
from config import AuthSettings

SETTINGS = AuthSettings()
PREFIX = os.environ.get("REDIS_PREFIX", "peer:")
KID, SEED = SETTINGS.keys()[0]
SIGNING = Ed25519PrivateKey.from_private_bytes(SEED)
PUBLIC = {KID: SIGNING.public_key()}
HASHER = PasswordHasher(
    time_cost=SETTINGS.argon2_time_cost,
    memory_cost=SETTINGS.argon2_memory_kib,
    parallelism=SETTINGS.argon2_parallelism,
    type=Type.ID,
)
HUGE = (1_000_000, 1)  # count per second: every decision allowed, but made


class LoginIn(BaseModel):
    email: str
    password: str


class RefreshIn(BaseModel):
    refresh_token: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=10)
    app.state.redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    app.state.gcra = app.state.redis.register_script(_GCRA)
    app.state.rotate = app.state.redis.register_script(_ROTATE)
    yield
    await app.state.redis.aclose()
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "alive"}


async def limit(request: Request, action: str, account: str) -> None:
    count, period = HUGE
    interval = round(period * 1_000_000 / count)
    tolerance = interval * (count - 1)
    client = request.client.host if request.client else "unknown"
    keys = [f"{PREFIX}rl:{action}_ip:{client}", f"{PREFIX}rl:{action}_account:{account}"]
    allowed, *_ = await app.state.gcra(
        keys=keys, args=["", interval, tolerance, interval, tolerance]
    )
    if int(allowed) != 1:
        raise HTTPException(429, "rate limited")


@app.post("/v1/auth/login")
async def login(body: LoginIn, request: Request) -> dict[str, Any]:
    key = body.email.strip().casefold()
    await limit(request, "login", hashlib.sha256(key.encode()).hexdigest()[:32])
    async with app.state.pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT id::text, email, name, phone, password_hash FROM accounts WHERE email_key = $1",
            key,
        )
    if row is None:
        raise HTTPException(401, "wrong")
    try:
        await asyncio.to_thread(HASHER.verify, row[4], body.password)
    except VerificationError:
        raise HTTPException(401, "wrong") from None
    sid = secrets.token_urlsafe(16)
    refresh = f"{row[0]}.{secrets.token_urlsafe(32)}"
    token_key = f"{PREFIX}rt:{hashlib.sha256(refresh.encode()).hexdigest()}"
    session_key = f"{PREFIX}sess:{sid}"
    async with app.state.redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            session_key,
            mapping={"account_id": row[0], "email": row[1], "name": row[2], "phone": ""},
        )
        pipe.pexpire(session_key, SETTINGS.refresh_ttl_s * 1000)
        pipe.hset(token_key, mapping={"sid": sid, "state": "live"})
        pipe.pexpire(token_key, SETTINGS.refresh_ttl_s * 1000)
        await pipe.execute()
    now = int(time.time())
    claims = {
        "iss": SETTINGS.issuer,
        "aud": SETTINGS.audience,
        "sub": row[0],
        "sid": sid,
        "email": row[1],
        "name": row[2],
        "phone": row[3],
        "iat": now,
        "nbf": now,
        "exp": now + SETTINGS.access_ttl_s,
        "jti": secrets.token_urlsafe(12),
    }
    access = jwt.encode(claims, SIGNING, algorithm="EdDSA", headers={"kid": KID})
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": SETTINGS.access_ttl_s,
        "refresh_token": refresh,
    }


@app.get("/v1/me")
async def me(authorization: str = Header()) -> dict[str, Any]:
    token = authorization.partition(" ")[2]
    try:
        header = jwt.get_unverified_header(token)
        key = PUBLIC[header["kid"]]
        claims = jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],
            audience=SETTINGS.audience,
            issuer=SETTINGS.issuer,
            options={"require": ["exp", "iat", "nbf", "sub", "sid", "iss", "aud"]},
        )
    except (jwt.PyJWTError, KeyError):
        raise HTTPException(401, "invalid token") from None
    if not await app.state.redis.exists(f"{PREFIX}sess:{claims['sid']}"):
        raise HTTPException(401, "revoked")
    return {
        "id": claims["sub"],
        "email": claims["email"],
        "name": claims["name"],
        "phone": claims["phone"],
    }


@app.post("/v1/auth/refresh")
async def refresh(body: RefreshIn, request: Request) -> dict[str, Any]:
    account = body.refresh_token.partition(".")[0]
    await limit(request, "refresh", hashlib.sha256(account.encode()).hexdigest()[:32])
    old = hashlib.sha256(body.refresh_token.encode()).hexdigest()
    new_token = f"{account}.{secrets.token_urlsafe(32)}"
    new = hashlib.sha256(new_token.encode()).hexdigest()
    reply = await app.state.rotate(
        keys=[f"{PREFIX}rt:{old}", f"{PREFIX}rt:{new}"],
        args=[f"{PREFIX}sess:", 10_000_000, SETTINGS.refresh_ttl_s * 1000],
    )
    if reply[0] != b"ok":
        raise HTTPException(401, "invalid token")
    raise HTTPException(500, "the bench only refreshes unknown tokens")
