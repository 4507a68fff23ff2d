"""The catalogue actor: read-only views of showrooms (later: availability, cached).

Reads are idempotent, so its mailbox retries them on transient failures; its breaker
guards the database so an outage answers 503 at once instead of piling up timeouts;
its bulkhead lets several reads run at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from adapters import Showroom, ShowroomStore
from config import BreakerSettings, RuntimeSettings
from supervisors import ActorSpec, Idempotent

__all__ = ["Catalogue", "ListShowrooms", "catalogue_spec"]


@dataclass(frozen=True, slots=True)
class ListShowrooms(Idempotent):
    """All showrooms, by name."""


type CatalogueMessage = ListShowrooms


class Catalogue:
    def __init__(self, showrooms: ShowroomStore) -> None:
        self._showrooms = showrooms

    async def handle(self, message: CatalogueMessage) -> list[Showroom]:
        return await self._showrooms.list_showrooms()


def catalogue_spec(
    showrooms: Callable[[], ShowroomStore],
    runtime: RuntimeSettings,
    *,
    concurrency: int,
    breaker: BreakerSettings,
) -> ActorSpec[CatalogueMessage, list[Showroom]]:
    """The catalogue's child spec; ``showrooms`` gives the current store at each start."""
    return ActorSpec(
        "catalogue",
        lambda: Catalogue(showrooms()),
        mailbox=dataclasses.replace(runtime.mailbox, concurrency=concurrency),
        breaker=breaker,
        retry=runtime.retry,
        shutdown_s=runtime.child_shutdown_s,
    )
