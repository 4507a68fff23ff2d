"""CORS on the whole tree: the configured front end's preflight is answered, its
answers carry the headers a browser needs (including a 429's and a 503's), any
other origin is refused; requests without Origin are untouched."""

from __future__ import annotations

import dataclasses

import pytest
import trio_asyncio

from config import ConfigError, Settings
from tests._booking import book, booking_body, local, next_weekday, prepare_database, running_tree

SHOP = "https://www.lomashwood.example"


async def test_preflight_and_answers_for_the_allowed_origin_only(settings: Settings) -> None:
    assert settings.database.url is not None
    http = dataclasses.replace(settings.http, cors_origins=frozenset({SHOP}))
    async with trio_asyncio.open_loop():
        await prepare_database(settings.database.url)
        async with running_tree(dataclasses.replace(settings, http=http)) as client:
            preflight = await client.options(
                "/v1/appointments",
                headers={
                    "Origin": SHOP,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type, idempotency-key, x-evil",
                },
            )
            stranger = await client.options(
                "/v1/appointments",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            )
            client.headers["Origin"] = SHOP
            booked = await book(client, booking_body(local(next_weekday(0), 9)))
            missing = await client.get("/v1/nowhere")
            client.headers["Origin"] = "https://evil.example"
            elsewhere = await client.get("/v1/showrooms")
            del client.headers["Origin"]
            plain = await client.get("/v1/showrooms")
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == SHOP
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    assert preflight.headers["Access-Control-Allow-Headers"] == "content-type, idempotency-key"
    assert preflight.headers["Access-Control-Max-Age"] == "600"
    assert stranger.status_code == 403
    assert stranger.json()["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in stranger.headers
    assert booked.status_code == 201
    for answer in (booked, missing):
        assert answer.headers["Access-Control-Allow-Origin"] == SHOP
        assert "RateLimit-Remaining" in answer.headers["Access-Control-Expose-Headers"]
        assert answer.headers["Vary"] == "Origin"
    assert missing.status_code == 404
    assert elsewhere.status_code == 200
    assert "Access-Control-Allow-Origin" not in elsewhere.headers
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_origins_are_checked_at_startup() -> None:
    with pytest.raises(ConfigError, match="LOMASH_HTTP_CORS_ORIGINS"):
        Settings.from_env({"LOMASH_HTTP_CORS_ORIGINS": "https://shop.example/path"})
    allowed = Settings.from_env({"LOMASH_HTTP_CORS_ORIGINS": f"{SHOP},http://localhost:3000"})
    assert allowed.http.cors_origins == {SHOP, "http://localhost:3000"}
