"""Products: the record, the store and cache Protocols, on Postgres and Redis.

The catalogue is small (tens of ranges) and changes rarely, so it travels whole:
one read of every active product, one cached copy. Redis keeps two copies of it
under the process's prefix: ``products`` (fresh, for ``fresh_s``) and
``products-stale`` (for ``stale_s``, served while Postgres is down).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

from adapters._postgres import Connection, Database
from adapters._redis import Cache, Client

__all__ = [
    "PostgresProducts",
    "Product",
    "ProductCache",
    "ProductCategory",
    "ProductStore",
    "RedisProductCache",
]

type ProductCategory = Literal["KITCHEN", "BEDROOM"]


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    category: ProductCategory
    description: str
    price_pence: int
    currency: str


class ProductStore(Protocol):
    async def active_products(self) -> list[Product]:
        """Every product on sale, by category and name."""
        ...


class ProductCache(Protocol):
    async def products(self, *, stale: bool) -> list[Product] | None:
        """The fresh copy (or, ``stale``, the long-lived one), if there is one."""
        ...

    async def keep_products(
        self, products: Sequence[Product], *, fresh_s: float, stale_s: float
    ) -> None: ...


_ACTIVE_SQL = """
SELECT id, name, category, description, price_pence, currency
FROM products WHERE active ORDER BY category, name, id
"""


class PostgresProducts:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def active_products(self) -> list[Product]:
        return await self._database.run(_active, readonly=True)


async def _active(connection: Connection) -> list[Product]:
    return [Product(*row) for row in await connection.fetch(_ACTIVE_SQL)]


class RedisProductCache:
    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    async def products(self, *, stale: bool) -> list[Product] | None:
        key = self._cache.key("products-stale" if stale else "products")

        async def operation(client: Client) -> bytes | str | None:
            value: bytes | str | None = await client.get(key)
            return value

        text = await self._cache.run(operation)
        return None if text is None else [Product(**p) for p in json.loads(text)]

    async def keep_products(
        self, products: Sequence[Product], *, fresh_s: float, stale_s: float
    ) -> None:
        text = json.dumps([asdict(p) for p in products])
        copies = (("products", fresh_s), ("products-stale", stale_s))
        keys = [(self._cache.key(name), round(ttl_s * 1000)) for name, ttl_s in copies]

        async def operation(client: Client) -> None:
            async with client.pipeline(transaction=False) as pipe:
                for key, ttl_ms in keys:
                    pipe.set(key, text, px=ttl_ms)
                await pipe.execute()

        await self._cache.run(operation)
