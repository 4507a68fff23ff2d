"""Twilio's and MSG91's SMS APIs on 127.0.0.1, strict about what they accept.

They check what the real ones check that an adapter can get wrong (auth, the number's
format, a missing body or template) and answer in the providers' own shapes, so the
notifier's SMS adapters are tested against the wire format rather than a mock.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from tests._fake_http import FakeHttpServer, Reply, Request, json_reply

__all__ = ["Msg91Fake", "Msg91Message", "TwilioFake", "TwilioMessage"]

_E164 = re.compile(r"\+[0-9]{8,15}")
_MOBILE = re.compile(r"[0-9]{8,15}")
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def _segments(body: str) -> int:
    """How many SMS parts Twilio bills ``body`` as (GSM-7 when it fits, else UCS-2)."""
    if all(char in _GSM7 or char in _GSM7_EXTENDED for char in body):
        units, single, multi = sum(2 if c in _GSM7_EXTENDED else 1 for c in body), 160, 153
    else:
        units, single, multi = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else -(-units // multi)


@dataclass(frozen=True, slots=True)
class TwilioMessage:
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    sid: str


def _twilio_error(status: int, code: int, message: str) -> Reply:
    return json_reply(status, _twilio_document(code, message, status))


def _twilio_document(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class TwilioFake(FakeHttpServer):
    """Twilio's Messages resource: ``POST /2010-04-01/Accounts/{sid}/Messages.json``,
    form-encoded, HTTP basic auth ``account_sid:auth_token``."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._messages: list[TwilioMessage] = []
        self._messages_lock = threading.Lock()

    @property
    def messages(self) -> list[TwilioMessage]:
        """Messages accepted so far, in order."""
        with self._messages_lock:
            return list(self._messages)

    def fail(
        self,
        status: int = 500,
        body: bytes | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``status``; the body defaults to Twilio's (code 20500 for a 500)."""
        if body is None:
            code = 20000 + status if status >= 400 else 20500
            body = _twilio_document(code, _REASONS.get(status, "Error"), status)
        super().fail(status, body, headers, times)

    def throttle(self, retry_after_s: int, times: int | None = None) -> None:
        """429 Too Many Requests (code 20429) with ``Retry-After``."""
        self.fail(
            429,
            _twilio_document(20429, "Too Many Requests", 429),
            {"Retry-After": str(retry_after_s)},
            times,
        )

    def _authorised(self, request: Request) -> bool:
        scheme, _, encoded = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            return False
        return hmac.compare_digest(given, f"{self.account_sid}:{self.auth_token}".encode())

    def respond(self, request: Request) -> Reply:
        messages_path = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        if request.path != messages_path:
            return _twilio_error(
                404, 20404, f"The requested resource {request.path} was not found"
            )
        if request.method != "POST":
            return _twilio_error(405, 20004, "Method not allowed")
        if not self._authorised(request):
            return _twilio_error(401, 20003, "Authenticate")
        form = request.form()
        to = form.get("To", "")
        if not _E164.fullmatch(to):
            return _twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        sender, service = form.get("From") or None, form.get("MessagingServiceSid") or None
        if sender is None and service is None:
            return _twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' is required.")
        body = form.get("Body", "")
        if not body:
            return _twilio_error(400, 21602, "Message body is required.")
        message = TwilioMessage(to, sender, service, body, "SM" + secrets.token_hex(16))
        with self._messages_lock:
            self._messages.append(message)
        now = format_datetime(datetime.now(UTC))
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{message.sid}"
        return json_reply(
            201,
            {
                "account_sid": self.account_sid,
                "api_version": "2010-04-01",
                "body": body,
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": sender,
                "messaging_service_sid": service,
                "num_media": "0",
                "num_segments": str(_segments(body)),
                "price": None,
                "price_unit": "USD",
                "sid": message.sid,
                "status": "queued",
                "subresource_uris": {"media": f"{uri}/Media.json"},
                "to": to,
                "uri": f"{uri}.json",
            },
        )


_REASONS = {
    400: "Bad Request",
    401: "Authenticate",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True, slots=True)
class Msg91Message:
    template_id: str
    recipients: list[dict[str, str]]
    request_id: str


def _msg91_error(status: int, message: str) -> Reply:
    return json_reply(status, {"type": "error", "message": message})


class Msg91Fake(FakeHttpServer):
    """MSG91's Flow API: ``POST /api/v5/flow`` with an ``authkey`` header and a JSON
    body naming a template and its recipients."""

    def __init__(self, auth_key: str) -> None:
        super().__init__()
        self.auth_key = auth_key
        self._messages: list[Msg91Message] = []
        self._messages_lock = threading.Lock()

    @property
    def messages(self) -> list[Msg91Message]:
        """Flow requests accepted so far, in order."""
        with self._messages_lock:
            return list(self._messages)

    def fail(
        self,
        status: int = 500,
        body: bytes | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``status``; the body defaults to MSG91's error shape."""
        if body is None:
            body = {"type": "error", "message": _REASONS.get(status, "Error")}
        super().fail(status, body, headers, times)

    def respond(self, request: Request) -> Reply:
        if request.path not in ("/api/v5/flow", "/api/v5/flow/"):
            return _msg91_error(404, "Not Found")
        if request.method != "POST":
            return _msg91_error(405, "Method Not Allowed")
        if not hmac.compare_digest(
            (request.header("authkey") or "").encode(), self.auth_key.encode()
        ):
            return _msg91_error(401, "Authentication failure")
        try:
            document = request.json()
        except ValueError:
            return _msg91_error(400, "Invalid JSON body")
        problem = _flow_problem(document)
        if problem is not None:
            return _msg91_error(400, problem)
        message = Msg91Message(document["template_id"], document["recipients"], secrets.token_hex(12))
        with self._messages_lock:
            self._messages.append(message)
        return json_reply(200, {"type": "success", "message": message.request_id})


def _flow_problem(document: Any) -> str | None:
    if not isinstance(document, dict):
        return "Body must be a JSON object"
    template_id = document.get("template_id")
    if not isinstance(template_id, str) or not template_id:
        return "template_id is required"
    if document.get("short_url", "0") not in ("0", "1"):
        return "short_url must be \"0\" or \"1\""
    recipients = document.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        return "recipients is required"
    for recipient in recipients:
        if not isinstance(recipient, dict):
            return "Each recipient must be an object"
        mobiles = recipient.get("mobiles")
        if not isinstance(mobiles, str) or not _MOBILE.fullmatch(mobiles):
            return "Mobile number must be digits with the country code"
        if not all(isinstance(value, str) for value in recipient.values()):
            return "Template variables must be strings"
    return None
