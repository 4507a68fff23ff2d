"""The catalogue actor: read-only views: showrooms and free slots (cached).

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
from adapters import Showroom, ShowroomStore
from config import BreakerSettings, RuntimeSettings
from supervisors import ActorSpec, Idempotent, Misuse

__all__ = ["Catalogue", "CatalogueMessage", "CatalogueReply", "ListShowrooms", "catalogue_spec"]


@dataclass(frozen=True, slots=True)
class ListShowrooms(Idempotent):
    """All showrooms, by name."""


type CatalogueMessage = ListShowrooms | FindSlots
type CatalogueReply = list[Showroom] | list[Slot]


class Catalogue:
    def __init__(self, showrooms: ShowroomStore, availability: Availability | None = None) -> None:
        self._showrooms = showrooms
        self._availability = availability

    async def handle(self, message: CatalogueMessage) -> CatalogueReply:
        if isinstance(message, FindSlots):
            if self._availability is None:
                raise Misuse("this catalogue was built without availability")
            return await self._availability.find(message)
        return await self._showrooms.list_showrooms()


def catalogue_spec(
    showrooms: Callable[[], ShowroomStore],
    runtime: RuntimeSettings,
    *,
    concurrency: int,
    breaker: BreakerSettings,
    availability: Callable[[], Availability] | None = None,
) -> ActorSpec[CatalogueMessage, CatalogueReply]:
    """The catalogue's child spec; the factories give the current stores at each start."""
    return ActorSpec(
        "catalogue",
        lambda: Catalogue(showrooms(), availability() if availability else None),
        mailbox=dataclasses.replace(runtime.mailbox, concurrency=concurrency),
        breaker=breaker,
        retry=runtime.retry,
        shutdown_s=runtime.child_shutdown_s,
    )
