"""Settings from LOMASH_* variables: defaults from the spec, one clear line per error."""

from __future__ import annotations

import pytest

from config import ConfigError, Overflow, Settings, environment_variables, replayer_mailbox
from config._auth import DEVELOPMENT_SIGNING_KEYS


def test_defaults_carry_the_spec_numbers() -> None:
    """Breaker, retry, drain and reconnect numbers default to the spec's values."""
    settings = Settings.from_env({})
    runtime = settings.runtime
    assert runtime.mailbox.message_timeout_s == 5.0
    assert (runtime.breaker.failure_ratio, runtime.breaker.min_calls) == (0.5, 5)
    assert (runtime.breaker.window_s, runtime.breaker.reset_timeout_s) == (60.0, 30.0)
    assert runtime.retry.delays() == pytest.approx((0.1, 0.2, 0.4))
    assert settings.drain_timeout_s == 25.0
    assert settings.database.reconnect_window_s == 30.0
    assert settings.database.reconnect_max_s <= settings.database.reconnect_window_s


def test_variables_override_nested_settings() -> None:
    """LOMASH_DATABASE_URL, LOMASH_BREAKER_*, LOMASH_RETRY_* reach their fields."""
    settings = Settings.from_env(
        {
            "LOMASH_DATABASE_URL": "postgresql://u@db:5432/app",
            "LOMASH_DATABASE_REPLICA_URL": "postgres://u@replica/app",
            "LOMASH_REDIS_URL": "redis+sentinel://s1:26379,s2:26379/main/0",
            "LOMASH_PORT": "9000",
            "LOMASH_WORKERS": "3",
            "LOMASH_BREAKER_RESET_TIMEOUT_S": "10",
            "LOMASH_RETRY_RETRY_STATUSES": "429, 503",
            "LOMASH_MAILBOX_OVERFLOW": "WAIT",
        }
    )
    assert settings.database.url == "postgresql://u@db:5432/app"
    assert settings.database.replica_url == "postgres://u@replica/app"
    assert settings.redis.url == "redis+sentinel://s1:26379,s2:26379/main/0"
    assert (settings.port, settings.workers) == (9000, 3)
    assert settings.runtime.breaker.reset_timeout_s == 10.0
    assert settings.runtime.retry.retry_statuses == {429, 503}
    assert settings.runtime.mailbox.overflow is Overflow.WAIT


PRODUCTION = {
    "LOMASH_ENVIRONMENT": "production",
    "LOMASH_BOOKING_TOKEN_SECRET": "s" * 32,
    "LOMASH_STRIPE_SECRET_KEY": "sk_live_lomash",
    "LOMASH_STRIPE_WEBHOOK_SECRET": "whsec_lomash",
    "LOMASH_SES_REGION": "eu-west-2",
    # An Ed25519 seed of its own (32 bytes, base64url).
    "LOMASH_AUTH_SIGNING_KEYS": "k1:cHJvZHVjdGlvbi1zaWduaW5nLWtleS10aGlydHl0d28",
}


def test_provider_settings_read_their_documented_variables() -> None:
    """LOMASH_EMAIL_FROM, LOMASH_SMTP_URL (credentials percent-decoded, 587 by default),
    LOMASH_TWILIO_FROM and the SES region, as the README names them."""
    settings = Settings.from_env(
        {
            "LOMASH_EMAIL_FROM": "Lomash Wood <hello@lomashwood.test>",
            "LOMASH_SMTP_URL": "smtp://mailer:p%40ss@relay.example",
            "LOMASH_TWILIO_ACCOUNT_SID": "AC123",
            "LOMASH_TWILIO_AUTH_TOKEN": "token",
            "LOMASH_TWILIO_FROM": "+447700900000",
            "LOMASH_SES_REGION": "eu-west-2",
        }
    )
    assert settings.email.sender == "Lomash Wood <hello@lomashwood.test>"
    server = settings.smtp.server()
    assert (server.host, server.port, server.username, server.password) == (
        "relay.example",
        587,
        "mailer",
        "p@ss",
    )
    assert settings.twilio.sender == "+447700900000"
    assert settings.ses.enabled
    assert settings.smtp.enabled
    assert settings.twilio.enabled
    assert not settings.msg91.enabled
    assert "p@ss" not in repr(settings)
    assert "token" not in repr(settings.twilio)


def test_production_starts_with_strong_secrets() -> None:
    """A production configuration done right is accepted (the refusals below are not
    a production that can never start)."""
    settings = Settings.from_env({**PRODUCTION, "LOMASH_ADMIN_TOKEN": "a" * 32})
    assert settings.environment == "production"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LOMASH_PORT": "eighty"}, "LOMASH_PORT: expected an integer, got 'eighty'"),
        ({"LOMASH_PORT": "70000"}, "LOMASH_PORT: must be between 0 and 65535"),
        ({"LOMASH_DATABASE_URL": "mysql://x"}, "LOMASH_DATABASE_URL: expected a postgresql://"),
        ({"LOMASH_REDIS_URL": "http://x"}, "LOMASH_REDIS_URL: expected a redis://"),
        ({"LOMASH_BREAKER_FAILURE_RATIO": "1.5"}, "LOMASH_BREAKER_FAILURE_RATIO: must be in"),
        ({"LOMASH_MAILBOX_CAPACITY": "0"}, "LOMASH_MAILBOX_CAPACITY: must be > 0"),
        ({"LOMASH_DRAIN_TIMEOUT_S": "30"}, "LOMASH_DRAIN_TIMEOUT_S: must be > 0 and below"),
        ({"LOMASH_HTTP_H2C": "maybe"}, "LOMASH_HTTP_H2C: expected true or false"),
        ({"LOMASH_TEST_ROUTES": "1"}, "LOMASH_TEST_ROUTES: unknown setting"),
        ({"LOMASH_LOG_FORMAT": "xml"}, "LOMASH_LOG_FORMAT: expected one of auto, json, console"),
        ({"LOMASH_DATABSE_URL": "postgresql://x"}, "LOMASH_DATABSE_URL: unknown setting"),
        (
            {"LOMASH_ENVIRONMENT": "production"},
            "LOMASH_ENVIRONMENT: production needs LOMASH_BOOKING_TOKEN_SECRET",
        ),
        (
            {"LOMASH_ENVIRONMENT": "Production"},
            "LOMASH_ENVIRONMENT: production needs LOMASH_BOOKING_TOKEN_SECRET",
        ),
        (
            {"LOMASH_ENVIRONMENT": "prod"},
            "LOMASH_ENVIRONMENT: expected one of development, test, staging, production",
        ),
        (
            {**PRODUCTION, "LOMASH_BOOKING_TOKEN_SECRET": "lomash-development-only"},
            "LOMASH_ENVIRONMENT: production refuses the published development",
        ),
        (
            {**PRODUCTION, "LOMASH_BOOKING_TOKEN_SECRET": "x"},
            "LOMASH_ENVIRONMENT: production needs a LOMASH_BOOKING_TOKEN_SECRET of at least 32",
        ),
        (
            {k: v for k, v in PRODUCTION.items() if k != "LOMASH_STRIPE_WEBHOOK_SECRET"},
            "LOMASH_ENVIRONMENT: production needs LOMASH_STRIPE_SECRET_KEY and "
            "LOMASH_STRIPE_WEBHOOK_SECRET",
        ),
        (
            {k: v for k, v in PRODUCTION.items() if k != "LOMASH_SES_REGION"},
            "LOMASH_ENVIRONMENT: production needs an email provider (LOMASH_SES_REGION or "
            "LOMASH_SMTP_URL)",
        ),
        ({"LOMASH_SMTP_URL": "http://mail"}, "LOMASH_SMTP_URL: expected smtp://"),
        ({"LOMASH_SMTP_URL": "smtp://mail:port"}, "LOMASH_SMTP_URL: the port must be a number"),
        ({"LOMASH_EMAIL_FROM": "nobody"}, "LOMASH_EMAIL_FROM: expected an email address"),
        (
            {"LOMASH_TWILIO_ACCOUNT_SID": "AC1"},
            "LOMASH_TWILIO_ACCOUNT_SID: set account_sid, auth_token and from together",
        ),
        ({"LOMASH_MSG91_AUTH_KEY": "k"}, "LOMASH_MSG91_AUTH_KEY: set auth_key and template_id"),
        (
            {k: v for k, v in PRODUCTION.items() if k != "LOMASH_AUTH_SIGNING_KEYS"},
            "LOMASH_ENVIRONMENT: production needs LOMASH_AUTH_SIGNING_KEYS of its own",
        ),
        (
            {**PRODUCTION, "LOMASH_AUTH_SIGNING_KEYS": DEVELOPMENT_SIGNING_KEYS},
            "LOMASH_ENVIRONMENT: production needs LOMASH_AUTH_SIGNING_KEYS of its own",
        ),
        (
            {"LOMASH_AUTH_SIGNING_KEYS": "k1:c2hvcnQ"},
            "LOMASH_AUTH_SIGNING_KEYS: key 'k1': an Ed25519 seed is 32 bytes",
        ),
        (
            {"LOMASH_AUTH_RATE_LIMITS_LOGIN_IP": "lots"},
            "LOMASH_AUTH_RATE_LIMITS_LOGIN_IP: expected COUNT/PERIOD",
        ),
        (
            {"LOMASH_AUTH_ACCESS_TTL_S": "3600"},
            "LOMASH_AUTH_ACCESS_TTL_S: must be > 0 and at most 900",
        ),
        (
            {**PRODUCTION, "LOMASH_ADMIN_TOKEN": "x"},
            "LOMASH_ENVIRONMENT: production needs a LOMASH_ADMIN_TOKEN of at least 32",
        ),
        (
            {"LOMASH_HTTP_H2C": "1", "LOMASH_HTTP_DRIVER": "lean"},
            "LOMASH_HTTP_H2C: needs driver=hypercorn",
        ),
        ({"LOMASH_HTTP_DRIVER": "fast"}, "LOMASH_HTTP_DRIVER: "),
        (
            {"LOMASH_DATABASE_COMMAND_TIMEOUT_S": "1"},
            "LOMASH_DATABASE_COMMAND_TIMEOUT_S: must be above statement_timeout_s",
        ),
    ],
)
def test_invalid_configuration_fails_with_one_line_naming_the_variable(
    environ: dict[str, str], message: str
) -> None:
    """Each bad value is reported by variable name, on one line."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_every_setting_has_a_variable() -> None:
    """`lomash config` lists a LOMASH_ variable for every field, defaults included."""
    variables = dict(environment_variables())
    assert variables["LOMASH_DATABASE_URL"] is None
    assert variables["LOMASH_HEALTH_DATABASE_TIMEOUT_S"] == 1.0
    assert variables["LOMASH_BREAKER_MIN_CALLS"] == 5
    assert all(name.startswith("LOMASH_") and name.isupper() for name in variables)
    Settings.from_env(
        {
            name: str(value)
            for name, value in variables.items()
            if value is not None and not isinstance(value, frozenset)
        }
    )


def test_a_replay_answers_a_slow_dependency_with_the_adapters_timeout() -> None:
    """The replayer's mailbox waits longer than all its calls' own deadlines together
    (three database calls, three Redis operations), so a slow Postgres ends a replay
    as an outage (handed back uncounted), never as the mailbox's timeout (counted)."""
    settings = Settings()
    mailbox = replayer_mailbox(
        settings.booking,
        settings.runtime,
        concurrency=4,
        database_call_s=settings.database.call_timeout_s,
        redis_call_s=settings.redis.operation_timeout_s,
    )
    calls_s = 3 * settings.database.call_timeout_s + 3 * settings.redis.operation_timeout_s
    assert mailbox.message_timeout_s is not None
    assert mailbox.message_timeout_s >= calls_s
    assert mailbox.ask_timeout_s > mailbox.message_timeout_s
    assert mailbox.concurrency == 4
