"""The SMTP adapter against a real SMTP server (aiosmtpd) and a silent one: each
failure becomes the project's error that decides retry, breaker and fallback."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from adapters import Email, RecipientRefused, SmtpEmail
from config import SmtpSettings
from supervisors import (
    ConnectionLost,
    DependencyError,
    LomashError,
    OperationTimeout,
    UpstreamError,
)
from tests._providers import SmtpFake

EMAIL = Email("ada@example.com", "Confirmed", "text", "<p>html</p>")


def adapter(url: str, timeout_s: float = 2.0) -> SmtpEmail:
    return SmtpEmail(SmtpSettings(url=url, timeout_s=timeout_s), sender="Lomash <a@lomash.test>")


@pytest.mark.parametrize(
    ("code", "at", "expected"),
    [
        (451, "RCPT", UpstreamError),  # try later: an outage
        (550, "RCPT", RecipientRefused),  # no such mailbox: an answer
        (451, "DATA", UpstreamError),  # smtpproto words this one differently
        (554, "DATA", DependencyError),  # refused outright
    ],
)
async def test_refusals_are_translated_by_their_reply_code(
    code: int, at: str, expected: type[LomashError]
) -> None:
    with SmtpFake() as smtp:
        smtp.refuse(code, "no", at=at)
        with trio.fail_after(10), pytest.raises(expected) as raised:
            await adapter(smtp.url).send(EMAIL)
    assert type(raised.value) is expected
    assert not smtp.messages


async def test_a_server_that_is_down_is_connection_lost() -> None:
    smtp = SmtpFake()  # never started: nothing listens on its port
    with trio.fail_after(10), pytest.raises(ConnectionLost):
        await adapter(smtp.url).send(EMAIL)


async def test_a_server_that_never_greets_is_a_timeout() -> None:
    """Accepts the connection, says nothing: OperationTimeout after timeout_s (not
    smtpproto's AttributeError)."""

    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        with trio.fail_after(10), pytest.raises(OperationTimeout):
            await adapter(f"smtp://127.0.0.1:{port}", timeout_s=0.5).send(EMAIL)
        nursery.cancel_scope.cancel()


async def test_a_message_goes_through_with_both_parts() -> None:
    with SmtpFake() as smtp:
        with trio.fail_after(10):
            message_id = await adapter(smtp.url).send(EMAIL)
        [message] = smtp.messages
    assert message["Message-ID"] == message_id
    assert message["To"] == "ada@example.com"
    assert message.get_body(("plain",)) is not None
    assert message.get_body(("html",)) is not None
