"""The peer: FastAPI on uvicorn (uvloop, httptools) with asyncpg, the same routes and SQL.

DATABASE_URL=postgresql://... uvicorn bench.peers.fastapi_app:app --loop uvloop --http httptools
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI

from adapters._showrooms import LIST_SQL

POOL_MAX = 10


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(
        os.environ["DATABASE_URL"], min_size=1, max_size=POOL_MAX
    )
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@app.get("/v1/showrooms")
async def showrooms() -> dict[str, list[dict[str, Any]]]:
    async with app.state.pool.acquire() as connection:
        rows = await connection.fetch(LIST_SQL)
    return {"showrooms": [dict(row) for row in rows]}
