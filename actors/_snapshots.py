"""In-process copies of the catalogue's rarely-changing lists, for the fast read routes.

The catalogue actor owns them: only it writes (``keep``), each time it has answered
one of these lists (from Postgres, its replica or the Redis copy); the gateway reads
them (``fresh``) without an ask, so a warm ``GET /v1/showrooms`` or ``GET
/v1/products`` costs no mailbox round trip, no Redis and no Postgres call. A copy
older than ``max_age_s`` is not served: the route then asks the actor as before, and
its answer is kept for the next requests. Under steady traffic a copy is renewed
before that: once it is half that old (``due``), one request (one at a time, per
copy) asks the catalogue before it answers, while the others go on being answered
from the copy, so an expiry never sends every request to Postgres at once. So what
a process answers is at most ``max_age_s`` older than what the actor would answer
now, in every process alike (each worker keeps its own copies, refreshed by its own
requests), and a change made anywhere is seen everywhere within that bound.
``max_age_s`` 0 keeps nothing.

Time is trio's clock, so the bound is exact under a virtual clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio

__all__ = ["PRODUCTS", "SHOWROOMS", "Snapshot", "Snapshots"]

SHOWROOMS = "showrooms"  # every showroom (ListShowrooms)
PRODUCTS = "products"  # every product on sale, no category filter (ListProducts(None))


@dataclass(frozen=True, slots=True)
class Snapshot:
    value: Any
    taken_at: float


class Snapshots:
    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self._kept: dict[str, Snapshot] = {}

    def keep(self, key: str, value: Any) -> None:
        if self.max_age_s > 0:
            self._kept[key] = Snapshot(value, trio.current_time())

    def due(self, snapshot: Snapshot) -> bool:
        """Old enough to renew (half of ``max_age_s``): ask before it expires."""
        return trio.current_time() - snapshot.taken_at > self.max_age_s / 2

    def fresh(self, key: str) -> Snapshot | None:
        """The copy kept under ``key`` if it is at most ``max_age_s`` old."""
        kept = self._kept.get(key)
        if kept is None or trio.current_time() - kept.taken_at > self.max_age_s:
            return None
        return kept
