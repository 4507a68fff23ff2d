"""``/v1/products``: the kitchen and bedroom ranges on sale, through the catalogue actor.

- ``GET /v1/products[?category=KITCHEN|BEDROOM]`` (any case) ->
  ``{"products": [{"id", "name", "category", "price_pence", "currency"}]}``;
  another category is 422 ``invalid_field`` naming ``category``.
- ``GET /v1/products/{id}`` -> the product with its ``description``; an unknown,
  withdrawn or malformed id is the same 404.

Answers may be cached by clients for as long as the service itself keeps them fresh.
Served from Redis, else Postgres (or its replica), else the stale copy while
Postgres is down (actors/_products.py); nothing there: 503 with ``Retry-After``.
"""

from __future__ import annotations

import re
from typing import Any, cast, get_args

from quart import Response, request
from quart_trio import QuartTrio

from actors import GetProduct, ListProducts
from adapters import Product, ProductCategory
from config import ProductSettings
from gateway._json import json_response
from supervisors import ActorRef, InvalidRequest, NotFound

__all__ = ["cache_headers", "products_view", "register_product_routes"]

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")  # the products table's own rule
_CATEGORIES: tuple[str, ...] = get_args(ProductCategory.__value__)


def _category() -> ProductCategory | None:
    raw = request.args.get("category")
    if raw is None or raw == "":
        return None
    if raw.upper() not in _CATEGORIES:
        raise InvalidRequest(
            f"category: one of {', '.join(_CATEGORIES)}", code="invalid_field", field="category"
        )
    return cast(ProductCategory, raw.upper())


def _listed(product: Product) -> dict[str, Any]:
    return {
        "id": product.id,
        "name": product.name,
        "category": product.category,
        "price_pence": product.price_pence,
        "currency": product.currency,
    }


def products_view(listed: list[Product]) -> dict[str, Any]:
    """``GET /v1/products``'s answer (also served from the catalogue's snapshot)."""
    return {"products": [_listed(p) for p in listed]}


def cache_headers(settings: ProductSettings) -> dict[str, str]:
    return {"Cache-Control": f"public, max-age={int(settings.fresh_s)}"}


def register_product_routes(
    app: QuartTrio, catalogue: ActorRef[Any, Any], settings: ProductSettings
) -> None:
    cacheable = cache_headers(settings)

    @app.get("/v1/products")
    async def products() -> Response:
        listed = cast(list[Product], await catalogue.ask(ListProducts(_category())))
        return json_response(products_view(listed), headers=cacheable)

    @app.get("/v1/products/<raw_id>")
    async def product(raw_id: str) -> Response:
        if not _ID.match(raw_id):
            raise NotFound("no such product")
        found = cast(Product, await catalogue.ask(GetProduct(raw_id)))
        return json_response(
            {**_listed(found), "description": found.description}, headers=cacheable
        )
