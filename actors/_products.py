"""The product catalogue's reads: the cached copy first, Postgres (or its replica)
when it is older than ``fresh_s``, the stale copy while Postgres is down.

Runs inside the catalogue actor (actors/_catalogue.py): its mailbox retries these
idempotent reads, its breaker guards Postgres, its bulkhead lets many run at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from adapters import Product, ProductCache, ProductCategory, ProductStore
from config import ProductSettings
from supervisors import Idempotent, LomashError, NotFound, is_outage

__all__ = ["GetProduct", "ListProducts", "ProductCatalogue"]

log = structlog.get_logger("actors.products")


@dataclass(frozen=True, slots=True)
class ListProducts(Idempotent):
    """The products on sale, by category and name; ``category`` None: all of them."""

    category: ProductCategory | None = None


@dataclass(frozen=True, slots=True)
class GetProduct(Idempotent):
    """One product on sale (``NotFound`` for an unknown or withdrawn one)."""

    product_id: str


class ProductCatalogue:
    def __init__(self, store: ProductStore, cache: ProductCache, settings: ProductSettings) -> None:
        self._store = store
        self._cache = cache
        self._settings = settings

    async def listed(self, message: ListProducts) -> list[Product]:
        products = await self._on_sale()
        if message.category is None:
            return products
        return [p for p in products if p.category == message.category]

    async def product(self, message: GetProduct) -> Product:
        for product in await self._on_sale():
            if product.id == message.product_id:
                return product
        raise NotFound("no such product")

    async def _on_sale(self) -> list[Product]:
        fresh = await self._cached(stale=False)
        if fresh is not None:
            return fresh
        try:
            products = await self._store.active_products()
        except LomashError as error:
            if not is_outage(error):
                raise
            stale = await self._cached(stale=True)
            if stale is None:
                raise
            log.info("products_from_stale_copy", error=error.message)
            return stale
        try:
            await self._cache.keep_products(
                products, fresh_s=self._settings.fresh_s, stale_s=self._settings.stale_s
            )
        except LomashError as error:
            if not is_outage(error):
                raise
            log.info("products_not_cached", error=error.message)
        return products

    async def _cached(self, *, stale: bool) -> list[Product] | None:
        try:
            return await self._cache.products(stale=stale)
        except LomashError as error:
            if not is_outage(error):
                raise
            log.info("products_cache_unavailable", error=error.message)
            return None
