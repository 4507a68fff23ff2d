"""ASGI at first hand, for the layers in front of Quart (the edge, the request
budget, the hot booking route): the types, and one way to send a whole JSON answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

__all__ = ["CLOSE", "App", "Message", "Receive", "Scope", "Send", "header_pairs", "send_json"]

type Scope = MutableMapping[str, Any]
type Message = MutableMapping[str, Any]
type Receive = Callable[[], Awaitable[Message]]
type Send = Callable[[Message], Awaitable[None]]
type App = Callable[[Scope, Receive, Send], Awaitable[None]]

CLOSE = (b"connection", b"close")


def header_pairs(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """``{"Retry-After": "5"}`` as ASGI header pairs (names lower-case)."""
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


async def send_json(
    send: Send, status: int, content: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A whole answer: ``content`` (JSON, already encoded) with its length and
    ``headers``, in one start and one body message."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
