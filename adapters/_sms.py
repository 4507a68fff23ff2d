"""SMS through Twilio's REST API and MSG91's v5 flow API, with httpx (no vendor SDK:
Twilio's async client is aiohttp-only), and a log line for development.

Both translate the same way, here only: no connection -> ``ConnectionLost``; no answer
in ``timeout_s`` -> ``OperationTimeout``; 429 and 5xx -> ``UpstreamError(status)``;
a number the provider will not send to (Twilio 21211 invalid, 21610 unsubscribed,
21614 not a mobile, 21408 region off) -> ``RecipientRefused``; anything else it
refuses (401 bad credentials, a bad template) -> ``DependencyError``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import structlog

from adapters._notifications import RecipientRefused, Sms, mask
from config import Msg91Settings, TwilioSettings
from supervisors import (
    ConnectionLost,
    DependencyError,
    LomashError,
    OperationTimeout,
    UpstreamError,
)

__all__ = ["LogSms", "Msg91Sms", "TwilioSms", "open_msg91", "open_twilio", "translate_http"]

log = structlog.get_logger("adapters.sms")

_TWILIO_RECIPIENT_CODES = frozenset({21211, 21408, 21610, 21614})


def translate_http(error: httpx.HTTPError, *, provider: str, timeout_s: float) -> LomashError:
    if isinstance(error, httpx.TimeoutException):
        return OperationTimeout(f"{provider} timeout", dependency=provider, timeout_s=timeout_s)
    return ConnectionLost(f"{provider} unreachable ({type(error).__name__})", dependency=provider)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _refusal(provider: str, response: httpx.Response, detail: str) -> LomashError:
    status = response.status_code
    if status == 429 or status >= 500:
        return UpstreamError(
            f"{provider} answered {status}: {detail}", dependency=provider, status=status
        )
    return DependencyError(f"{provider} refused ({status}): {detail}", dependency=provider)


class TwilioSms:
    name = "twilio"

    def __init__(self, client: httpx.AsyncClient, settings: TwilioSettings) -> None:
        assert settings.account_sid is not None
        assert settings.sender is not None
        self._client = client
        self._path = f"/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
        sender_field = "MessagingServiceSid" if settings.sender.startswith("MG") else "From"
        self._sender = {sender_field: settings.sender}
        self._timeout_s = settings.timeout_s

    async def send(self, sms: Sms) -> str:
        try:
            response = await self._client.post(
                self._path, data={"To": sms.to, "Body": sms.body, **self._sender}
            )
        except httpx.HTTPError as error:
            raise translate_http(error, provider=self.name, timeout_s=self._timeout_s) from error
        body = _json(response)
        if response.status_code in (200, 201) and isinstance(body.get("sid"), str):
            return str(body["sid"])
        detail = f"{body.get('code')} {body.get('message', response.reason_phrase)}"
        if body.get("code") in _TWILIO_RECIPIENT_CODES:
            raise RecipientRefused(f"twilio refused the number: {detail}", provider=self.name)
        raise _refusal(self.name, response, detail)


class Msg91Sms:
    name = "msg91"

    def __init__(self, client: httpx.AsyncClient, settings: Msg91Settings) -> None:
        assert settings.template_id is not None
        self._client = client
        self._template_id = settings.template_id
        self._timeout_s = settings.timeout_s

    async def send(self, sms: Sms) -> str:
        mobiles = "".join(ch for ch in sms.to if ch.isdigit())
        payload = {
            "template_id": self._template_id,
            "short_url": "0",
            "recipients": [{"mobiles": mobiles, "message": sms.body, "reference": sms.reference}],
        }
        try:
            response = await self._client.post("/api/v5/flow", json=payload)
        except httpx.HTTPError as error:
            raise translate_http(error, provider=self.name, timeout_s=self._timeout_s) from error
        body = _json(response)
        if response.status_code == 200 and body.get("type") == "success":
            return str(body.get("message", ""))
        raise _refusal(self.name, response, str(body.get("message", response.reason_phrase)))


class LogSms:
    """Development only (no SMS provider configured): the SMS is a log line."""

    name = "log"

    async def send(self, sms: Sms) -> str:
        message_id = f"log-{uuid.uuid4().hex[:12]}"
        log.info("sms_logged", to=mask(sms.to), body=sms.body, message_id=message_id)
        return message_id


@asynccontextmanager
async def open_twilio(settings: TwilioSettings) -> AsyncIterator[TwilioSms]:
    assert settings.account_sid is not None
    assert settings.auth_token is not None
    async with httpx.AsyncClient(
        base_url=settings.api_base,
        auth=(settings.account_sid, settings.auth_token),
        timeout=settings.timeout_s,
    ) as client:
        yield TwilioSms(client, settings)


@asynccontextmanager
async def open_msg91(settings: Msg91Settings) -> AsyncIterator[Msg91Sms]:
    assert settings.auth_key is not None
    async with httpx.AsyncClient(
        base_url=settings.api_base,
        headers={"authkey": settings.auth_key, "accept": "application/json"},
        timeout=settings.timeout_s,
    ) as client:
        yield Msg91Sms(client, settings)
