"""Real servers on loopback that speak the providers' wire formats, and can be told to
fail, stall, slow down or cut the connection: Twilio's and MSG91's REST APIs, SES v2
(moto behind a fault front) and SMTP (aiosmtpd).

Each runs in its own thread (the tests run in real time), binds 127.0.0.1 on a free
port, and records what it received.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import boto3
from aiosmtpd.controller import Controller
from moto.server import ThreadedMotoServer

__all__ = ["Msg91Fake", "SesFake", "SmtpFake", "TwilioFake", "free_port"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Fault:
    """What the next requests get instead of the normal answer."""

    mode: str = "ok"  # ok | fail | stall | slow | cut
    status: int = 500
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None  # None: until changed
    delay_s: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.fake.dispatch(self, body)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: HttpFake


class HttpFake:
    """A scriptable HTTP server: ``answer`` is the provider; faults come first."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._fault = Fault()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.requests: list[tuple[str, str, str]] = []  # (method, path, outcome)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def ok(self) -> None:
        with self._lock:
            self._fault = Fault()
        self._released.set()

    def fail(
        self,
        status: int,
        body: bytes | dict[str, Any] = b"",
        headers: dict[str, str] | None = None,
        *,
        times: int | None = None,
    ) -> None:
        """Answer ``status`` with ``body`` (the provider's usual error body if empty)."""
        body = body or self.error_body(status)
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        kind = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
        self._set(Fault("fail", status, raw, {**kind, **(headers or {})}, times))

    def stall(self) -> None:
        self._released.clear()
        self._set(Fault("stall"))

    def slow(self, delay_s: float) -> None:
        self._set(Fault("slow", delay_s=delay_s))

    def cut(self, *, times: int | None = None) -> None:
        self._set(Fault("cut", times=times))

    def _set(self, fault: Fault) -> None:
        with self._lock:
            self._fault = fault

    def _take(self) -> Fault:
        with self._lock:
            fault = self._fault
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._fault = Fault()
            return fault

    def dispatch(self, handler: _Handler, body: bytes) -> None:
        fault = self._take()
        self.requests.append((handler.command, handler.path, fault.mode))
        if fault.mode == "fail":
            handler.reply(fault.status, fault.body, fault.headers)
            return
        if fault.mode == "cut":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault.mode == "stall":
            self._released.wait()
            handler.close_connection = True
            return
        if fault.mode == "slow":
            time.sleep(fault.delay_s)
        self.answer(handler, body)

    def error_body(self, status: int) -> bytes | dict[str, Any]:
        return b""

    def answer(self, handler: _Handler, body: bytes) -> None:
        handler.reply(404, b"")


def _twilio_error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class TwilioFake(HttpFake):
    """``POST /2010-04-01/Accounts/{sid}/Messages.json``: form body, basic auth."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self._auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self.messages: list[dict[str, str]] = []

    def error_body(self, status: int) -> dict[str, Any]:
        return _twilio_error(20500, "Internal Server Error", status)

    def throttle(self, retry_after_s: int, *, times: int | None = None) -> None:
        self.fail(
            429,
            _twilio_error(20429, "Too Many Requests", 429),
            {"Retry-After": str(retry_after_s)},
            times=times,
        )

    def answer(self, handler: _Handler, body: bytes) -> None:
        def error(code: int, message: str, status: int) -> None:
            reply = json.dumps(_twilio_error(code, message, status)).encode()
            handler.reply(status, reply, {"Content-Type": "application/json"})

        if handler.path != f"/2010-04-01/Accounts/{self.account_sid}/Messages.json":
            return error(20404, "The requested resource was not found", 404)
        if handler.headers.get("Authorization") != self._auth:
            return error(20003, "Authenticate", 401)
        form = dict(urllib.parse.parse_qsl(body.decode()))
        to = form.get("To", "")
        if not (to.startswith("+") and to[1:].isdigit() and 8 <= len(to) - 1 <= 15):
            return error(21211, f"The 'To' number {to} is not a valid phone number.", 400)
        if not form.get("Body"):
            return error(21602, "Message body is required.", 400)
        sid = "SM" + secrets.token_hex(16)
        sender = form.get("From") or form.get("MessagingServiceSid", "")
        self.messages.append({"sid": sid, "to": to, "from": sender, "body": form["Body"]})
        resource = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": sender,
            "body": form["Body"],
            "status": "queued",
            "num_segments": "1",
            "error_code": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        handler.reply(201, json.dumps(resource).encode(), {"Content-Type": "application/json"})
        return None


class Msg91Fake(HttpFake):
    """``POST /api/v5/flow``: JSON body, ``authkey`` header."""

    def __init__(self, auth_key: str) -> None:
        super().__init__()
        self._key = auth_key
        self.messages: list[dict[str, Any]] = []

    def answer(self, handler: _Handler, body: bytes) -> None:
        def reply(status: int, kind: str, message: str) -> None:
            raw = json.dumps({"type": kind, "message": message}).encode()
            handler.reply(status, raw, {"Content-Type": "application/json"})

        if handler.path.rstrip("/") != "/api/v5/flow":
            return reply(404, "error", "not found")
        if handler.headers.get("authkey") != self._key:
            return reply(401, "error", "Authentication failure")
        try:
            payload = json.loads(body)
            recipients = payload["recipients"]
            template_id = payload["template_id"]
            assert all(str(r["mobiles"]).isdigit() for r in recipients)
        except (ValueError, KeyError, TypeError, AssertionError):
            return reply(400, "error", "invalid request")
        request_id = secrets.token_hex(12)
        self.messages.append(
            {"template_id": template_id, "recipients": recipients, "request_id": request_id}
        )
        return reply(200, "success", request_id)


class SesFake(HttpFake):
    """SES v2: moto in server mode, behind this fault front (its ``url``)."""

    def __init__(self, region: str = "eu-west-2") -> None:
        super().__init__()
        self.region = region
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)

    def __enter__(self) -> Self:
        self._moto.start()
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._moto.stop()

    @property
    def _moto_address(self) -> tuple[str, int]:
        host, port = self._moto.get_host_and_port()
        return str(host), int(port)

    def _moto_call(self, method: str, path: str, body: bytes = b"", headers: Any = None) -> Any:
        connection = http.client.HTTPConnection(*self._moto_address, timeout=10)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def verify(self, identity: str) -> None:
        """Moto refuses SendEmail from an unverified sender (400 MessageRejected)."""
        host, port = self._moto_address
        client = boto3.client(
            "sesv2",
            region_name=self.region,
            endpoint_url=f"http://{host}:{port}",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        client.create_email_identity(EmailIdentity=identity.rpartition("<")[2].rstrip(">"))

    def unavailable(self, *, times: int | None = None) -> None:
        self.fail(
            503,
            {"message": "Service Unavailable"},
            {"x-amzn-ErrorType": "ServiceUnavailable"},
            times=times,
        )

    def throttle(self, *, times: int | None = None) -> None:
        self.fail(
            429,
            {"message": "Maximum sending rate exceeded."},
            {"x-amzn-ErrorType": "TooManyRequestsException"},
            times=times,
        )

    def sent(self) -> list[dict[str, Any]]:
        _, _, raw = self._moto_call("GET", "/moto-api/data.json")
        messages: list[dict[str, Any]] = json.loads(raw)["ses"]["Message"]
        return messages

    def answer(self, handler: _Handler, body: bytes) -> None:
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        status, answer_headers, raw = self._moto_call(handler.command, handler.path, body, headers)
        keep = {
            k: v
            for k, v in answer_headers
            if k.lower()
            not in ("content-length", "connection", "transfer-encoding", "date", "server")
        }
        handler.reply(status, raw, keep)


class _Mailbox:
    def __init__(self, fake: SmtpFake) -> None:
        self._fake = fake

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        refusal = None if self._fake.refuse_data else self._fake.take_refusal()
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._fake.refuse_data:
            refusal = self._fake.take_refusal()
            if refusal is not None:
                return refusal
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self._fake.messages.append(message)
        return "250 Message accepted"


class SmtpFake:
    """An SMTP server (aiosmtpd) that keeps what it receives; can refuse or be down."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self._refusal: tuple[str, int | None] | None = None
        self.refuse_data = False  # refuse at DATA rather than at RCPT
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        if self._controller is None:
            # A plain asyncio loop of its own: trio-asyncio's loop policy must not
            # give the server's thread a loop that belongs to trio.
            self._controller = Controller(
                _Mailbox(self),
                hostname="127.0.0.1",
                port=self.port,
                loop=asyncio.SelectorEventLoop(),
            )
            self._controller.start()

    def down(self) -> None:
        """Stop listening: a client's connection is refused."""
        if self._controller is not None:
            self._controller.stop()
            self._controller.loop.close()
            self._controller = None

    def refuse(
        self,
        code: int = 451,
        text: str = "try again later",
        *,
        times: int | None = None,
        at: str = "RCPT",
    ) -> None:
        """Answer RCPT (or DATA) with ``code``, ``times`` times (None: until changed)."""
        with self._lock:
            self._refusal = (f"{code} {text}", times)
            self.refuse_data = at == "DATA"

    def take_refusal(self) -> str | None:
        with self._lock:
            if self._refusal is None:
                return None
            reply, times = self._refusal
            if times is not None:
                self._refusal = (reply, times - 1) if times > 1 else None
            return reply


@contextmanager
def running(*fakes: Any) -> Iterator[None]:
    """Enter every fake, and leave them all however the block ends."""
    entered: list[Any] = []
    try:
        for fake in fakes:
            fake.__enter__()
            entered.append(fake)
        yield
    finally:
        for fake in reversed(entered):
            fake.__exit__(None, None, None)
