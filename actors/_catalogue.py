"""The catalogue actor: read-only views: showrooms, products and free slots (cached).

It keeps its latest answer of the full showroom and product lists as in-process
snapshots (actors/_snapshots.py) that the gateway's fast read routes answer from.

Reads are idempotent, so its mailbox retries them on transient failures; its breaker
guards the database so an outage answers 503 at once instead of piling up timeouts;
its bulkhead lets several reads run at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from actors._availability import Availability, FindSlots
from actors._calendar import Slot
from actors._products import GetProduct, ListProducts, ProductCatalogue
from actors._snapshots import PRODUCTS, SHOWROOMS, Snapshots
from adapters import Product, Showroom, ShowroomStore
from config import BreakerSettings, RuntimeSettings
from supervisors import ActorSpec, Idempotent, Misuse

__all__ = ["Catalogue", "CatalogueMessage", "CatalogueReply", "ListShowrooms", "catalogue_spec"]


@dataclass(frozen=True, slots=True)
class ListShowrooms(Idempotent):
    """All showrooms, by name."""


type CatalogueMessage = ListShowrooms | FindSlots | ListProducts | GetProduct
type CatalogueReply = list[Showroom] | list[Slot] | list[Product] | Product


class Catalogue:
    def __init__(
        self,
        showrooms: ShowroomStore,
        availability: Availability | None = None,
        products: ProductCatalogue | None = None,
        snapshots: Snapshots | None = None,
    ) -> None:
        self._showrooms = showrooms
        self._availability = availability
        self._products = products
        self._snapshots = snapshots or Snapshots(0.0)

    async def handle(self, message: CatalogueMessage) -> CatalogueReply:
        match message:
            case FindSlots():
                return await self._need(self._availability, "availability").find(message)
            case ListProducts():
                listed = await self._need(self._products, "products").listed(message)
                if message.category is None:
                    self._snapshots.keep(PRODUCTS, listed)
                return listed
            case GetProduct():
                return await self._need(self._products, "products").product(message)
            case ListShowrooms():
                rows = await self._showrooms.list_showrooms()
                self._snapshots.keep(SHOWROOMS, rows)
                return rows

    @staticmethod
    def _need[T](part: T | None, name: str) -> T:
        if part is None:
            raise Misuse(f"this catalogue was built without {name}")
        return part


def catalogue_spec(
    showrooms: Callable[[], ShowroomStore],
    runtime: RuntimeSettings,
    *,
    concurrency: int,
    breaker: BreakerSettings,
    availability: Callable[[], Availability] | None = None,
    products: Callable[[], ProductCatalogue] | None = None,
    snapshots: Snapshots | None = None,
) -> ActorSpec[CatalogueMessage, CatalogueReply]:
    """The catalogue's child spec; the factories give the current stores at each start
    (the snapshots outlive restarts, like the mailbox)."""
    return ActorSpec(
        "catalogue",
        lambda: Catalogue(
            showrooms(),
            availability() if availability else None,
            products() if products else None,
            snapshots,
        ),
        mailbox=dataclasses.replace(runtime.mailbox, concurrency=concurrency),
        breaker=breaker,
        retry=runtime.retry,
        shutdown_s=runtime.child_shutdown_s,
    )
