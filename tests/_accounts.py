"""Helpers of the account tests: register, log in, the bearer header."""

from __future__ import annotations

from typing import Any

import httpx

PASSWORD = "a sound passphrase"


async def register(
    client: httpx.AsyncClient, email: str, *, password: str = PASSWORD, name: str = "Ada"
) -> httpx.Response:
    body = {"email": email, "password": password, "name": name, "phone": "+44 7700 900123"}
    return await client.post("/v1/auth/register", json=body)


async def login(
    client: httpx.AsyncClient, email: str, *, password: str = PASSWORD
) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password})


async def customer(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    """A registered, logged-in customer's tokens (asserting both steps worked)."""
    registered = await register(client, email)
    assert registered.status_code == 201, registered.text
    logged_in = await login(client, email)
    assert logged_in.status_code == 200, logged_in.text
    tokens: dict[str, Any] = logged_in.json()
    return tokens


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}
