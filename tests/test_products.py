"""The product catalogue: GET /v1/products[?category=] and /v1/products/{id}, on the
real tree; served from Redis, from the replica, or from the stale copy while the
primary is down (spec: "RDS Primary Instance Failure": catalogue from cache/replica).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import redis
import trio_asyncio

from chaos import open_proxy
from config import Settings
from tests._booking import prepare_database, running_tree
from tests._service import with_database_url
from tests.conftest import fetch, port_of
from tests.test_postgres import via

KITCHENS = ["hartley-shaker-kitchen", "linea-handleless-kitchen", "oakridge-country-kitchen"]
BEDROOMS = ["aria-fitted-wardrobe", "nook-walk-in-wardrobe", "somerset-bedroom-suite"]


def ids(answer: httpx.Response) -> list[str]:
    return [p["id"] for p in answer.json()["products"]]


def forget_copies(settings: Settings, *names: str) -> None:
    """Drop cached copies (as their TTLs would), straight in Redis."""
    client = redis.Redis.from_url(settings.redis.url or "")
    client.delete(*(f"{settings.redis.prefix}{name}" for name in names))
    client.close()


async def test_the_ranges_on_sale_by_category_and_name(settings: Settings) -> None:
    """All six demo ranges by category then name, each with id, name, category,
    integer pence and GBP; a category (any case) filters; cacheable by clients."""
    assert settings.database.url is not None
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(settings) as client:
            everything = await client.get("/v1/products")
            kitchens = await client.get("/v1/products", params={"category": "kitchen"})
            bedrooms = await client.get("/v1/products", params={"category": "BEDROOM"})
    assert everything.status_code == 200
    assert ids(everything) == BEDROOMS + KITCHENS
    hartley = everything.json()["products"][3]
    assert hartley == {
        "id": "hartley-shaker-kitchen",
        "name": "Hartley Shaker Kitchen",
        "category": "KITCHEN",
        "price_pence": 1250000,
        "currency": "GBP",
    }
    assert everything.headers["Cache-Control"] == "public, max-age=60"
    assert ids(kitchens) == KITCHENS
    assert ids(bedrooms) == BEDROOMS


async def test_one_product_and_what_is_not_on_sale(settings: Settings) -> None:
    """A product has its description; unknown, withdrawn and malformed ids are the
    same 404; an unknown category is 422 naming the field."""
    assert settings.database.url is not None
    async with trio_asyncio.open_loop():
        await prepare_database(
            settings.database.url,
            "UPDATE products SET active = false WHERE id = 'nook-walk-in-wardrobe'",
        )
        async with running_tree(settings) as client:
            one = await client.get("/v1/products/aria-fitted-wardrobe")
            missing = [
                await client.get(f"/v1/products/{raw}")
                for raw in ("no-such-range", "nook-walk-in-wardrobe", "Aria", "x" * 65, "%00")
            ]
            listed = await client.get("/v1/products", params={"category": "bedroom"})
            garden = await client.get("/v1/products", params={"category": "garden"})
    assert one.status_code == 200
    assert one.json()["description"].startswith("Floor-to-ceiling sliding wardrobe")
    assert one.json()["price_pence"] == 420000
    assert [m.status_code for m in missing] == [404] * 5
    assert {m.json()["error"]["code"] for m in missing} == {"not_found"}
    assert "nook-walk-in-wardrobe" not in ids(listed)
    assert garden.status_code == 422
    assert garden.json()["error"]["field"] == "category"
    assert garden.json()["error"]["code"] == "invalid_field"


async def test_postgres_down_the_catalogue_is_served_from_the_cache_then_the_stale_copy(
    settings: Settings,
) -> None:
    """Primary unreachable: the fresh copy answers; once it has expired, the stale one;
    with neither, 503 with Retry-After (nothing made up). (The copies in Redis: the
    in-process one, tests/test_fast_reads.py, is off here.)"""
    settings = dataclasses.replace(settings, catalogue_memory_s=0.0)
    url = settings.database.url
    assert url is not None
    async with trio_asyncio.open_loop(), open_proxy(port_of(url)) as proxy:
        await prepare_database(url)
        async with running_tree(with_database_url(settings, via(proxy, url))) as client:
            before = await client.get("/v1/products")
            proxy.reset()
            fresh = await client.get("/v1/products")
            forget_copies(settings, "products")
            stale = await client.get("/v1/products", params={"category": "KITCHEN"})
            one = await client.get("/v1/products/linea-handleless-kitchen")
            forget_copies(settings, "products", "products-stale")
            nothing = await client.get("/v1/products")
            proxy.forward()
    assert before.status_code == 200
    assert fresh.status_code == 200
    assert fresh.content == before.content
    assert stale.status_code == 200
    assert ids(stale) == KITCHENS
    assert one.json()["name"] == "Linea Handleless Kitchen"
    assert nothing.status_code == 503
    assert int(nothing.headers["Retry-After"]) >= 1


async def test_primary_down_without_a_cache_the_replica_answers(settings: Settings) -> None:
    """No cached copy and the primary cut: the read goes to the replica."""
    url = settings.database.url
    assert url is not None
    async with trio_asyncio.open_loop(), open_proxy(port_of(url)) as proxy:
        await prepare_database(url)
        database = dataclasses.replace(settings.database, url=via(proxy, url), replica_url=url)
        async with running_tree(dataclasses.replace(settings, database=database)) as client:
            proxy.reset()
            answer = await client.get("/v1/products")
            rows: list[Any] = await fetch(url, "SELECT count(*) FROM products WHERE active")
    assert answer.status_code == 200
    assert len(ids(answer)) == rows[0][0] == 6
