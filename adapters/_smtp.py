"""Email through an SMTP relay with smtpproto (anyio-native, so it runs on trio).

STARTTLS whenever the server offers it (smtpproto's behaviour), trusting the system's
CAs and ``ca_file``; AUTH when the URL has credentials. Errors, translated here only:
no connection or a dropped one -> ``ConnectionLost``; silence past ``timeout_s`` ->
``OperationTimeout``; a 4xx reply (the relay's "try later") -> ``UpstreamError(503)``;
550/553 to a recipient -> ``RecipientRefused``; any other 5xx (a refused login, a
refused sender) -> ``DependencyError``.
"""

from __future__ import annotations

import re
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr

import anyio
from smtpproto.auth import PlainAuthenticator
from smtpproto.client import AsyncSMTPClient
from smtpproto.protocol import SMTPException

from adapters._notifications import Email, RecipientRefused
from config import SmtpSettings
from supervisors import (
    ConnectionLost,
    DependencyError,
    LomashError,
    OperationTimeout,
    UpstreamError,
)

__all__ = ["SmtpEmail", "translate_smtp"]

PROVIDER = "smtp"
# The reply code is the message's first word, or follows "Unexpected response: ".
_CODE = re.compile(r"\b([2-5]\d\d)\b")


def translate_smtp(error: BaseException, *, timeout_s: float) -> LomashError:
    """The project's error for what an SMTP send raised."""
    if isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError):
        # smtpproto 2.0 turns a greeting that never came into an AttributeError whose
        # context is the TimeoutError.
        return OperationTimeout("smtp timeout", dependency=PROVIDER, timeout_s=timeout_s)
    if isinstance(error, SMTPException):
        found = _CODE.search(str(error))
        code = int(found.group(1)) if found else 0
        if 400 <= code < 500:
            return UpstreamError(f"smtp answered {error}", dependency=PROVIDER, status=503)
        if code in (550, 553):
            return RecipientRefused(f"smtp refused the recipient: {error}", provider=PROVIDER)
        return DependencyError(f"smtp refused: {error}", dependency=PROVIDER)
    return ConnectionLost(f"smtp unreachable ({type(error).__name__})", dependency=PROVIDER)


class SmtpEmail:
    name = PROVIDER

    def __init__(self, settings: SmtpSettings, *, sender: str) -> None:
        server = settings.server()
        context = ssl.create_default_context(cafile=settings.ca_file)
        authenticator = (
            PlainAuthenticator(server.username, server.password or "")
            if server.username is not None
            else None
        )
        self._client = AsyncSMTPClient(
            host=server.host,
            port=server.port,
            connect_timeout=settings.timeout_s,
            timeout=settings.timeout_s,
            ssl_context=context,
            authenticator=authenticator,
            max_concurrent_connections=settings.max_connections,
        )
        self._sender = sender
        self._domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        self._timeout_s = settings.timeout_s

    def message(self, email: Email) -> EmailMessage:
        message = EmailMessage()
        name, address = parseaddr(self._sender)
        message["From"] = Address(display_name=name, addr_spec=address)
        message["To"] = email.to
        message["Subject"] = email.subject
        message["Message-ID"] = make_msgid(domain=self._domain)
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
        return message

    async def send(self, email: Email) -> str:
        message = self.message(email)
        try:
            await self._client.send_message(message)
        except (SMTPException, TimeoutError, OSError, anyio.BrokenResourceError) as error:
            raise translate_smtp(error, timeout_s=self._timeout_s) from error
        except anyio.EndOfStream as error:  # the server hung up mid-conversation
            raise translate_smtp(error, timeout_s=self._timeout_s) from error
        except AttributeError as error:  # smtpproto 2.0's form of a greeting timeout
            if not isinstance(error.__context__, TimeoutError):
                raise
            raise translate_smtp(error, timeout_s=self._timeout_s) from error
        return str(message["Message-ID"])
