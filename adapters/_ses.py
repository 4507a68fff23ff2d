"""AWS SES v2 through aiobotocore, whose httpx session runs natively on trio.

botocore's own retries are off (one HTTP request per call): the SES sender actor's
mailbox policy owns the spec's 3 attempts with backoff, so every attempt passes its
breaker and is logged. Errors, translated here only:

- throttling (429, ``TooManyRequestsException``, ``Throttling``) and 5xx ->
  ``UpstreamError(status)``;
- no connection / a reset -> ``ConnectionLost``; no answer in ``timeout_s`` ->
  ``OperationTimeout``;
- ``MessageRejected`` about the recipient, or a bad address -> ``RecipientRefused``;
- anything else (bad credentials, an unverified sender, ...) -> ``DependencyError``:
  our configuration, and the breaker counts it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from aiobotocore.config import AioConfig
from aiobotocore.httpxsession import HttpxSession
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from adapters._notifications import Email, RecipientRefused
from config import SesSettings
from supervisors import (
    ConnectionLost,
    DependencyError,
    LomashError,
    OperationTimeout,
    UpstreamError,
)

__all__ = ["SesEmail", "open_ses", "translate_ses"]

PROVIDER = "ses"
_THROTTLING = frozenset({"TooManyRequestsException", "Throttling", "ThrottlingException"})
_RECIPIENT = ("address", "recipient", "destination")


def translate_ses(error: Exception, *, timeout_s: float) -> LomashError:
    """The project's error for a botocore/httpx error raised by a SES call."""
    if isinstance(error, ReadTimeoutError | ConnectTimeoutError | httpx.TimeoutException):
        return OperationTimeout("ses timeout", dependency=PROVIDER, timeout_s=timeout_s)
    if isinstance(
        error, EndpointConnectionError | ConnectionClosedError | httpx.TransportError | OSError
    ):
        return ConnectionLost(f"ses unreachable ({type(error).__name__})", dependency=PROVIDER)
    if isinstance(error, ClientError):
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = str(error.response.get("Error", {}).get("Message", ""))
        if code in _THROTTLING or status == 429:
            return UpstreamError(f"ses throttled: {code}", dependency=PROVIDER, status=429)
        if status >= 500:
            return UpstreamError(
                f"ses answered {status} {code}", dependency=PROVIDER, status=status
            )
        if code == "MessageRejected" and any(w in message.lower() for w in _RECIPIENT):
            return RecipientRefused(f"ses refused the recipient: {message}", provider=PROVIDER)
        return DependencyError(f"ses refused ({status} {code}): {message}", dependency=PROVIDER)
    if isinstance(error, BotoCoreError):
        return ConnectionLost(f"ses client error: {error}", dependency=PROVIDER)
    return DependencyError(f"ses: {type(error).__name__}: {error}", dependency=PROVIDER)


class SesEmail:
    name = PROVIDER

    def __init__(self, client: Any, *, sender: str, timeout_s: float) -> None:
        self._client = client
        self._sender = sender
        self._timeout_s = timeout_s

    async def send(self, email: Email) -> str:
        try:
            answer = await self._client.send_email(
                FromEmailAddress=self._sender,
                Destination={"ToAddresses": [email.to]},
                Content={
                    "Simple": {
                        "Subject": {"Data": email.subject, "Charset": "UTF-8"},
                        "Body": {
                            "Text": {"Data": email.text, "Charset": "UTF-8"},
                            "Html": {"Data": email.html, "Charset": "UTF-8"},
                        },
                    }
                },
            )
        except (BotoCoreError, ClientError, httpx.HTTPError, OSError) as error:
            raise translate_ses(error, timeout_s=self._timeout_s) from error
        return str(answer["MessageId"])


@asynccontextmanager
async def open_ses(settings: SesSettings, *, sender: str) -> AsyncIterator[SesEmail]:
    """A SES v2 client (its connections closed on exit)."""
    config = AioConfig(
        http_session_cls=HttpxSession,
        connect_timeout=settings.timeout_s,
        read_timeout=settings.timeout_s,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    session = get_session()
    async with session.create_client(
        "sesv2",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        config=config,
    ) as client:
        yield SesEmail(client, sender=sender, timeout_s=settings.timeout_s)
