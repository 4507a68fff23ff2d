"""AWS SES v2 on 127.0.0.1: moto's server behind a front that can be told to fail.

moto speaks SES v2 for real (signed rest-json requests, ``MessageRejected`` for an
unverified sender) but cannot be made to fail like AWS does; the front passes every
request to it verbatim while ok, and answers the scripted fault otherwise, shaped as
AWS shapes it (``x-amzn-ErrorType`` header, ``{"message": ...}`` body).
"""

from __future__ import annotations

import http.client
import json
import secrets
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3  # type: ignore[import-untyped]
from moto.server import ThreadedMotoServer

from tests._fake_http import FakeHttpServer, Reply, Request

__all__ = ["SentEmail", "SesFake"]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "date",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_FORWARD_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class SentEmail:
    """A message moto accepted; ``body`` is the HTML part when there is one, else the text."""

    id: str
    source: str
    destinations: dict[str, list[str]]
    subject: str
    body: str


class SesFake(FakeHttpServer):
    """``url`` is the SES endpoint to configure; ``moto_url`` reaches moto directly."""

    def __init__(self, region: str = "eu-west-2") -> None:
        super().__init__()
        self.region = region
        self._moto: ThreadedMotoServer | None = None
        self._moto_port = 0
        self._client: Any = None
        self._identities: list[str] = []
        self._client_lock = threading.Lock()

    @property
    def moto_url(self) -> str:
        if self._moto is None:
            raise RuntimeError("SesFake is not started")
        return f"http://127.0.0.1:{self._moto_port}"

    def start(self) -> None:
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        self._moto, self._moto_port = moto, moto.get_host_and_port()[1]
        try:
            super().start()
        except BaseException:
            self._stop_moto()
            raise

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self._stop_moto()

    def _stop_moto(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def _sesv2(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = boto3.client(
                    "sesv2",
                    endpoint_url=self.moto_url,
                    region_name=self.region,
                    aws_access_key_id="test",
                    aws_secret_access_key="test",
                )
            return self._client

    def verify(self, identity: str) -> None:
        """Make ``identity`` (an address or a domain) a verified sender."""
        self._sesv2().create_email_identity(EmailIdentity=identity)
        if identity not in self._identities:
            self._identities.append(identity)

    def sent(self) -> list[SentEmail]:
        """What moto accepted, in order."""
        with urllib.request.urlopen(f"{self.moto_url}/moto-api/data.json") as answer:
            data = json.load(answer)
        return [
            SentEmail(m["id"], m["source"], m["destinations"], m["subject"], m["body"])
            for m in data.get("ses", {}).get("Message", [])
        ]

    def reset(self) -> None:
        """Forget every message and identity in moto, then verify the known senders again."""
        request = urllib.request.Request(f"{self.moto_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request):
            pass
        for identity in self._identities:
            self._sesv2().create_email_identity(EmailIdentity=identity)

    def fail_aws(self, status: int, code: str, message: str, times: int | None = None) -> None:
        """Answer as AWS answers an error: code in ``x-amzn-ErrorType``, message in the body."""
        self.fail(
            status,
            {"message": message},
            {
                "Content-Type": "application/json",
                "x-amzn-ErrorType": code,
                "x-amzn-RequestId": secrets.token_hex(16),
            },
            times,
        )

    def fail_unavailable(self, times: int | None = None) -> None:
        """503 ServiceUnavailable."""
        self.fail_aws(503, "ServiceUnavailable", "Service Unavailable", times)

    def throttle(self, times: int | None = None) -> None:
        """429 TooManyRequestsException (SES v2's throttling error)."""
        self.fail_aws(429, "TooManyRequestsException", "Too Many Requests", times)

    def respond(self, request: Request) -> Reply:
        connection = http.client.HTTPConnection(
            "127.0.0.1", self._moto_port, timeout=_FORWARD_TIMEOUT_S
        )
        try:
            connection.putrequest(
                request.method, request.target, skip_host=True, skip_accept_encoding=True
            )
            for name, value in request.headers:
                if name.lower() not in _HOP_BY_HOP:
                    connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(request.body)))
            connection.endheaders(request.body)
            answer = connection.getresponse()
            body = answer.read()
            headers = tuple(
                (name, value)
                for name, value in answer.getheaders()
                if name.lower() not in _HOP_BY_HOP
            )
            return Reply(answer.status, body, headers)
        finally:
            connection.close()
