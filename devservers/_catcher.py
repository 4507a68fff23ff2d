"""The development mail catcher: an SMTP server on loopback (aiosmtpd) that keeps
every message it receives as an ``.eml`` file, for ``make run`` with no email
provider configured. ``python -m service mail`` lists what it caught."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import structlog

from devservers._embedded import free_port

__all__ = ["CaughtMail", "caught", "mail_catcher"]

log = structlog.get_logger("devservers.mail")


class _Keeper:
    def __init__(self, folder: Path) -> None:
        self._folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        name = f"{time.time_ns():020d}-{secrets.token_hex(3)}.eml"
        path = self._folder / name
        path.write_bytes(envelope.original_content)
        log.info("mail_caught", to=list(envelope.rcpt_tos), file=str(path))
        return "250 Message accepted"


@contextmanager
def mail_catcher(folder: Path) -> Iterator[str]:
    """A catcher writing into ``folder``; yields its ``smtp://`` URL."""
    from aiosmtpd.controller import Controller  # the embedded extra: make run only

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # A plain asyncio loop of its own, whatever loop policy the process has.
    loop = asyncio.SelectorEventLoop()
    controller = Controller(_Keeper(folder), hostname="127.0.0.1", port=port, loop=loop)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()
        loop.close()


@dataclass(frozen=True, slots=True)
class CaughtMail:
    path: Path
    sender: str
    to: str
    subject: str
    text: str


def caught(folder: Path, *, limit: int = 20) -> list[CaughtMail]:
    """The newest ``limit`` caught messages, newest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.eml"), reverse=True)[:limit]:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        body = message.get_body(("plain",))
        found.append(
            CaughtMail(
                path=path,
                sender=str(message.get("From", "")),
                to=str(message.get("To", "")),
                subject=str(message.get("Subject", "")),
                text=body.get_content() if body is not None else "",
            )
        )
    return found
