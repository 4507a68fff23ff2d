"""The development mail catcher: an SMTP server on 127.0.0.1 that keeps every message
it receives as an ``.eml`` file in a folder, for ``make run`` when no email provider
is configured. Nothing is relayed anywhere.

Files are named by the time they arrived (sortable) and a short id; the envelope is
kept in ``X-MailFrom`` / ``X-RcptTo`` headers prepended to the message as received,
so Bcc recipients show. ``caught`` lists the newest for a CLI.
"""

from __future__ import annotations

import asyncio
import secrets
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from devservers._embedded import free_port

__all__ = [
    "CaughtMail",
    "Delivery",
    "MailCatcher",
    "MessageHandler",
    "SmtpController",
    "caught",
]

_STAMP = "%Y%m%dT%H%M%S.%fZ"
_PARSER = BytesParser(policy=policy.default)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as the SMTP server accepted it: envelope and raw content."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        return cast(EmailMessage, _PARSER.parsebytes(self.content))


class MessageHandler:
    """An aiosmtpd handler that passes each accepted message to ``deliver``
    (called on the server's thread) and answers 250."""

    def __init__(self, deliver: Callable[[Delivery], None]) -> None:
        self.deliver = deliver

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.deliver(Delivery(envelope.mail_from or "", tuple(envelope.rcpt_tos), content))
        return "250 2.0.0 Message accepted"


class SmtpController(Controller):
    """aiosmtpd's threaded Controller on 127.0.0.1, making its sessions with
    ``make_smtp``; ``stop`` also closes open sessions first (an asyncio server is
    not closed while connections to it are open)."""

    def __init__(
        self,
        handler: Any,
        port: int,
        *,
        make_smtp: Callable[..., SMTP] = SMTP,
        **smtp_parameters: Any,
    ) -> None:
        smtp_parameters.setdefault("server_hostname", "localhost")
        super().__init__(handler, hostname="127.0.0.1", port=port, **smtp_parameters)
        self._make_smtp = make_smtp
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def factory(self) -> SMTP:
        smtp = self._make_smtp(self.handler, **self.SMTP_kwargs)
        self._sessions.add(smtp)
        return smtp

    def _close_sessions(self) -> None:
        for smtp in list(self._sessions):
            if smtp.transport is not None:
                smtp.transport.close()

    def stop(self, no_assert: bool = False) -> None:
        if self._thread is not None and not self.loop.is_closed():
            done = asyncio.run_coroutine_threadsafe(self._closing(), self.loop)
            done.result(timeout=5)
        super().stop(no_assert)  # type: ignore[no-untyped-call]

    async def _closing(self) -> None:
        self._close_sessions()
        await asyncio.sleep(0)


def _file_name(now: datetime) -> str:
    return f"{now.strftime(_STAMP)}-{secrets.token_hex(3)}.eml"


def _save(folder: Path, delivery: Delivery) -> Path:
    envelope = (
        f"X-MailFrom: {delivery.mail_from}\r\nX-RcptTo: {', '.join(delivery.rcpt_tos)}\r\n"
    ).encode()
    path = folder / _file_name(datetime.now(UTC))
    partial = path.with_suffix(".part")
    partial.write_bytes(envelope + delivery.content)
    partial.replace(path)
    return path


class MailCatcher:
    """``with MailCatcher(folder) as catcher: catcher.url`` (``smtp://127.0.0.1:PORT``)."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port if port is not None else free_port()
        self._controller: SmtpController | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def _keep(self, delivery: Delivery) -> None:
        _save(self.folder, delivery)

    def start(self) -> None:
        if self._controller is not None:
            raise RuntimeError("MailCatcher is already started")
        self.folder.mkdir(parents=True, exist_ok=True)
        controller = SmtpController(MessageHandler(self._keep), self.port)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class CaughtMail:
    when: datetime
    sender: str
    recipients: tuple[str, ...]
    subject: str
    text: str
    path: Path


def _text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    content = body.get_content()
    return content if isinstance(content, str) else ""


def _read(path: Path) -> CaughtMail:
    message = cast(EmailMessage, _PARSER.parsebytes(path.read_bytes()))
    envelope_to = str(message.get("X-RcptTo", ""))
    recipients = tuple(address.strip() for address in envelope_to.split(",") if address.strip())
    return CaughtMail(
        when=datetime.strptime(path.name.split("-", 1)[0], _STAMP).replace(tzinfo=UTC),
        sender=str(message.get("From") or message.get("X-MailFrom") or ""),
        recipients=recipients or (str(message.get("To", "")),),
        subject=str(message.get("Subject", "")),
        text=_text_of(message),
        path=path,
    )


def caught(folder: Path, limit: int = 20) -> list[CaughtMail]:
    """The newest ``limit`` messages caught in ``folder``, newest first."""
    if not folder.is_dir():
        return []
    return [_read(path) for path in sorted(folder.glob("*.eml"), reverse=True)[:limit]]
