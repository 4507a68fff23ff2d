"""The product catalogue: how long its cached copies live."""

from __future__ import annotations

from dataclasses import dataclass

from config._check import check as _check

__all__ = ["ProductSettings"]


@dataclass(frozen=True, slots=True)
class ProductSettings:
    """The catalogue's copies in Redis (actors/_products.py)."""

    # Served without asking Postgres for this long after it was read.
    fresh_s: float = 60.0
    # Served while Postgres is down (stale is fine: prices are settled at order time).
    stale_s: float = 24 * 3600.0

    def __post_init__(self) -> None:
        _check(self.fresh_s > 0, "fresh_s: must be > 0")
        _check(self.stale_s >= self.fresh_s, "stale_s: must be >= fresh_s")
