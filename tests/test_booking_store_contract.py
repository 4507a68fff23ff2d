"""The booking-store contract (``tests/booking_store_contract.py``) on both stores:
``PostgresBookingStore`` on a fresh real database with the demo seed, and
``MemoryBookingStore``, the twin the actors' virtual-time simulations run on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio_asyncio

from adapters import MemoryBookingStore, PostgresBookingStore, open_database
from config import DatabaseSettings
from tests._booking import prepare_database
from tests.booking_store_contract import BookingStoreContract, StoreFactory, StoreUnderTest
from tests.conftest import fetch


@pytest.fixture(params=["memory", "postgres"])
def store_factory(request: pytest.FixtureRequest, fresh_database_url: str) -> StoreFactory:
    """Opens a fresh store of each implementation, and a reader of its outbox."""
    if request.param == "memory":

        @asynccontextmanager
        async def open_memory() -> AsyncIterator[StoreUnderTest]:
            await trio.lowlevel.checkpoint()
            store = MemoryBookingStore()

            async def outbox() -> list[str]:
                await trio.lowlevel.checkpoint()
                return [job.job_id for job in store.outbox]

            yield StoreUnderTest(store, outbox)

        return open_memory

    @asynccontextmanager
    async def open_postgres() -> AsyncIterator[StoreUnderTest]:
        async with trio_asyncio.open_loop():
            await prepare_database(fresh_database_url)
            settings = DatabaseSettings(url=fresh_database_url)
            async with open_database(settings, application="t", cleanup_s=1.0) as db:

                async def outbox() -> list[str]:
                    rows = await fetch(fresh_database_url, "SELECT job_id FROM outbox ORDER BY id")
                    return [r[0] for r in rows]

                yield StoreUnderTest(PostgresBookingStore(db), outbox)

    return open_postgres


class TestBookingStoreContract(BookingStoreContract):
    """Every contract test, once per store."""
