"""Notifications: the email and SMS providers, in the order they are tried.

Email goes to SES first, then to the SMTP provider; SMS to Twilio first, then MSG91.
A provider with no configuration is skipped (so SMTP alone, or no SMS provider, is a
valid set-up); ``make run`` with none at all uses a local mail catcher and logs SMS.
Secrets are kept out of every ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from config._check import check as _check

__all__ = [
    "EmailSettings",
    "Msg91Settings",
    "NotificationSettings",
    "SesSettings",
    "SmtpServer",
    "SmtpSettings",
    "TwilioSettings",
]


def _http_url(name: str, value: str | None) -> None:
    _check(
        value is None or value.startswith(("https://", "http://")),
        f"{name}: expected an http(s):// URL, got {value!r}",
    )


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """What every email carries, and how long an undelivered one is retried."""

    # The From header (LOMASH_EMAIL_FROM); SES needs it verified as an identity.
    sender: str = field(
        default="Lomash Wood <appointments@lomashwood.co.uk>", metadata={"env": "FROM"}
    )
    # An email no provider took is kept and retried by the 15-minute cron for this
    # long after its first attempt; then it is FAILED and an alert goes out.
    retry_window_s: float = 24 * 3600.0

    def __post_init__(self) -> None:
        _check("@" in self.sender, f"sender: expected an email address, got {self.sender!r}")
        _check(self.retry_window_s > 0, "retry_window_s: must be > 0")


@dataclass(frozen=True, slots=True)
class SesSettings:
    """AWS SES v2, the first email provider (adapters/_ses.py). Off without a region."""

    region: str | None = None
    # Where its API is: AWS's own when None; tests point it at a local moto server.
    endpoint_url: str | None = None
    # None: the AWS default chain (environment, the ECS task role, ...).
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    # One call's deadline (connect and read).
    timeout_s: float = 5.0
    # The spec: 3 attempts on throttling, 5xx and connection errors, backing off
    # backoff_s, then backoff_s * 2 between them.
    attempts: int = 3
    backoff_s: float = 0.2

    def __post_init__(self) -> None:
        _http_url("endpoint_url", self.endpoint_url)
        _check(self.timeout_s > 0, "timeout_s: must be > 0")
        _check(1 <= self.attempts <= 10, "attempts: must be between 1 and 10")
        _check(self.backoff_s >= 0, "backoff_s: must be >= 0")
        _check(
            (self.access_key_id is None) == (self.secret_access_key is None),
            "access_key_id: set both access_key_id and secret_access_key, or neither",
        )

    @property
    def enabled(self) -> bool:
        return self.region is not None


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """The secondary email provider: any SMTP relay (adapters/_smtp.py)."""

    # smtp://user:password@host:port (port 587 when left out); STARTTLS is used
    # whenever the server offers it.
    url: str | None = field(default=None, repr=False)
    # A CA bundle to trust for STARTTLS beside the system's (a private relay).
    ca_file: str | None = None
    # Connecting, and each command after it.
    timeout_s: float = 10.0
    # Connections open at once (the notifier's bulkhead is the real bound).
    max_connections: int = 10

    def __post_init__(self) -> None:
        _check(self.timeout_s > 0, "timeout_s: must be > 0")
        _check(self.max_connections >= 1, "max_connections: must be >= 1")
        if self.url is not None:
            self.server()  # raises on a malformed URL

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def server(self) -> SmtpServer:
        """The URL's parts (``ValueError`` naming ``url`` if it is not smtp://host)."""
        assert self.url is not None
        parts = urlsplit(self.url)
        try:
            port = parts.port or 587
        except ValueError:
            raise ValueError("url: the port must be a number from 1 to 65535") from None
        if parts.scheme != "smtp" or not parts.hostname:
            raise ValueError("url: expected smtp://[user:password@]host[:port]")
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return SmtpServer(parts.hostname, port, user, password)


@dataclass(frozen=True, slots=True)
class TwilioSettings:
    """The first SMS provider (adapters/_sms.py). Off without an account."""

    account_sid: str | None = None
    auth_token: str | None = field(default=None, repr=False)
    # The sending number (E.164) or a Messaging Service SID (MG...).
    sender: str | None = field(default=None, metadata={"env": "FROM"})
    api_base: str = "https://api.twilio.com"
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        _http_url("api_base", self.api_base)
        _check(self.timeout_s > 0, "timeout_s: must be > 0")
        configured = [self.account_sid, self.auth_token, self.sender]
        _check(
            all(v is None for v in configured) or all(v is not None for v in configured),
            "account_sid: set account_sid, auth_token and from together, or none of them",
        )

    @property
    def enabled(self) -> bool:
        return self.account_sid is not None


@dataclass(frozen=True, slots=True)
class Msg91Settings:
    """The secondary SMS provider: MSG91's v5 flow API (adapters/_sms.py)."""

    auth_key: str | None = field(default=None, repr=False)
    # The approved flow template; its variables are ``message`` and ``reference``.
    template_id: str | None = None
    api_base: str = "https://control.msg91.com"
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        _http_url("api_base", self.api_base)
        _check(self.timeout_s > 0, "timeout_s: must be > 0")
        _check(
            (self.auth_key is None) == (self.template_id is None),
            "auth_key: set auth_key and template_id together, or neither",
        )

    @property
    def enabled(self) -> bool:
        return self.auth_key is not None


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    """The notifier (actors/_notifier.py): what it links to and how much it sends at once."""

    # The manage link in an appointment's messages; {id} and {token} are filled in.
    manage_url: str = "https://www.lomashwood.co.uk/appointments/{id}?token={token}"
    # The link in an order's messages; {id} and {token} are filled in.
    order_url: str = "https://www.lomashwood.co.uk/orders/{id}?token={token}"
    # Bulkhead: jobs the notifier works on at once (each sends one email and one SMS).
    concurrency: int = 8
    # Where undelivered email is kept between the 15-minute retries: at most this
    # many are retried per run (the oldest first), the rest on the next run.
    retry_batch: int = 500
    # A sender's attempt deadline is its provider's timeout plus this (so the adapter's
    # own timeout, the more precise error, fires first); its ask's, all attempts plus it.
    sender_margin_s: float = 0.5

    def __post_init__(self) -> None:
        for name in ("manage_url", "order_url"):
            url: str = getattr(self, name)
            _check(
                url.startswith(("https://", "http://")) and "{id}" in url,
                f"{name}: expected an http(s):// URL with {{id}} in it",
            )
        _check(self.concurrency >= 1, "concurrency: must be >= 1")
        _check(self.retry_batch >= 1, "retry_batch: must be >= 1")
        _check(self.sender_margin_s > 0, "sender_margin_s: must be > 0")
