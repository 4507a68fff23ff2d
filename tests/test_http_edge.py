"""The HTTP edge against a real ``lomash serve``, with raw sockets: connections close,
nothing wedges, nothing leaks, one client cannot hold the service."""

from __future__ import annotations

import signal

import pytest
import trio

from tests._raw_http import RawConnection, open_client, open_sockets, request
from tests.test_process import BOUND_S, Service, driver_environment, environment, service

# The fixtures, used by name below: every edge test runs once per HTTP driver.
__all__ = ["driver_environment", "environment"]

TOKEN_ID = "123e4567-e89b-12d3-a456-426614174000"
LIVE = request("GET", "/health/live")
H2C_UPGRADE = request(
    "GET",
    "/health/live",
    headers={
        "Upgrade": "h2c",
        "Connection": "Upgrade, HTTP2-Settings",
        "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA",
    },
)


async def answered_again(connection: RawConnection) -> None:
    """The connection still serves: a second request gets its 200."""
    await connection.send(LIVE)
    again = await connection.read_response()
    assert again is not None
    assert again.status == 200


async def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(
    driver_environment: dict[str, str],
) -> None:
    """Keep-alive serves several requests, then the idle connection is closed by the
    server (LOMASH_HTTP_KEEP_ALIVE_S), for every kind of route."""
    driver_environment = {**driver_environment, "LOMASH_HTTP_KEEP_ALIVE_S": "1"}
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            for path in ("/health/live", "/v1/showrooms", "/nowhere"):
                connection = await client.connect()
                await connection.send(request("GET", path))
                first = await connection.read_response()
                assert first is not None
                await answered_again(connection)
                assert await connection.closed_by_server()


@pytest.mark.parametrize(
    "raw",
    [
        request("GET", "/health/live", headers={"Connection": "close"}),
        b"GET /health/live HTTP/1.0\r\n\r\n",
        request("GET", "/v1/showrooms", headers={"Connection": "close"}),
    ],
    ids=["connection-close", "http-1.0", "quart-route"],
)
async def test_connection_close_and_http_1_0_close_after_the_answer(
    driver_environment: dict[str, str], raw: bytes
) -> None:
    """``Connection: close`` and HTTP/1.0 get their answer, then end of stream at once
    (the keep-alive timeout is 60 s here, so only the close rule can end it)."""
    driver_environment = {**driver_environment, "LOMASH_HTTP_KEEP_ALIVE_S": "60"}
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            connection = await client.connect()
            await connection.send(raw)
            response = await connection.read_response()
            assert response is not None
            assert response.status == 200
            assert await connection.closed_by_server()


EARLY = [
    ("POST", "/nowhere", {}, 404),
    ("POST", "/health/live", {}, 405),
    ("POST", "/v1/showrooms", {}, 405),
    ("POST", "/v1/appointments/availability", {}, 405),
    ("POST", f"/v1/appointments/{TOKEN_ID}/cancel", {}, 401),
    ("POST", f"/v1/appointments/{TOKEN_ID}/reschedule", {}, 401),
    ("POST", f"/v1/appointments/{TOKEN_ID}/cancel", {"X-Manage-Token": "x" * 20}, 404),
    ("PUT", "/v1/appointments", {}, 405),
    ("POST", "/admin/queues/bookings/dead/x/requeue", {}, 401),
]


async def test_an_answer_before_the_body_leaves_the_connection_usable(
    driver_environment: dict[str, str],
) -> None:
    """A route that answers before the body has arrived (404/405/401; the body is sent
    only once the server has logged its answer): the body is drained, the answer has
    no Connection: close, and the next request on the connection is answered."""
    driver_environment = {**driver_environment, "LOMASH_ADMIN_TOKEN": "a" * 40}
    body = b'{"reason": "changed my mind"}'
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            for method, path, headers, status in EARLY:
                connection = await client.connect()
                head = request(
                    method,
                    path,
                    headers={
                        "Content-Type": "application/json",
                        "Content-Length": str(len(body)),
                        **headers,
                    },
                )
                answered = len(running.logs.named("request"))
                await connection.send(head)
                await running.logs.wait_for("request", answered + 1)  # decided, body unsent
                await connection.send(body)
                response = await connection.read_response()
                assert response is not None
                assert (path, response.status) == (path, status)
                assert "connection" not in response.headers
                await answered_again(connection)
                await connection.aclose()
        assert not running.logs.named("unhandled_error")
        assert not [line for line in running.logs.lines if line.get("event") == "raw"]


async def test_a_body_that_never_arrives_is_408_and_the_connection_closes(
    driver_environment: dict[str, str],
) -> None:
    """A declared body trickled in (or never sent) is answered 408 request_timeout at
    LOMASH_HTTP_BODY_TIMEOUT_S on the booking route and a Quart route alike."""
    driver_environment = {**driver_environment, "LOMASH_HTTP_BODY_TIMEOUT_S": "1"}
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            for path, extra in (
                ("/v1/appointments", {"Idempotency-Key": "slow-body"}),
                ("/_test/echo", {}),
            ):
                connection = await client.connect()
                headers = {"Content-Type": "application/json", "Content-Length": "60000", **extra}
                await connection.send(request("POST", path, headers=headers) + b'{"na')
                response = await connection.read_response()
                assert response is not None
                assert (path, response.status, response.code) == (path, 408, "request_timeout")
                assert await connection.closed_by_server()


async def test_content_length_with_transfer_encoding_closes_the_connection(
    driver_environment: dict[str, str],
) -> None:
    """RFC 9112 6.1: a request with both framings gets Connection: close, then EOF."""
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            connection = await client.connect()
            await connection.send(
                b"POST /_test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )
            response = await connection.read_response()
            assert response is not None
            assert response.headers.get("connection") == "close"
            assert await connection.closed_by_server()


async def test_no_http2_switch_no_server_banner_no_redirect_from_the_host_header(
    driver_environment: dict[str, str],
) -> None:
    """h2c upgrade is answered in HTTP/1.1 (no 101), no Server header, and a doubled
    slash is a JSON 404, not a redirect to the client's Host."""
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            connection = await client.connect()
            await connection.send(H2C_UPGRADE)
            upgraded = await connection.read_response()
            assert upgraded is not None
            assert upgraded.status == 200
            assert "server" not in upgraded.headers
            await connection.send(b"GET /v1//showrooms HTTP/1.1\r\nHost: evil.example\r\n\r\n")
            odd = await connection.read_response()
            assert odd is not None
            assert (odd.status, odd.code) == (404, "not_found")
            assert "location" not in odd.headers
            await answered_again(connection)


async def test_the_connection_cap_sheds_idle_connections_first_then_answers_503(
    driver_environment: dict[str, str],
) -> None:
    """At LOMASH_HTTP_MAX_CONNECTIONS a newcomer closes the oldest idle connection;
    with every connection busy it gets 503 overloaded with Retry-After and EOF."""
    driver_environment = {**driver_environment, "LOMASH_HTTP_MAX_CONNECTIONS": "3"}
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            idle = []
            for _ in range(3):
                connection = await client.connect()
                await answered_again(connection)
                idle.append(connection)
            newcomer = await client.connect()
            await answered_again(newcomer)  # served: room was made
            assert await idle[0].closed_by_server()  # the oldest idle one
            await answered_again(idle[1])

            async with trio.open_nursery() as nursery:
                busy = [idle[1], idle[2], newcomer]
                for connection in busy:
                    await connection.send(request("GET", "/_test/sleep?seconds=3"))
                await running.logs.wait_for("test_sleep_started", 3)
                refused = await client.connect()
                await refused.send(LIVE)
                shed = await refused.read_response()
                assert shed is not None
                assert (shed.status, shed.code) == (503, "overloaded")
                assert int(shed.headers["retry-after"]) >= 1
                assert await refused.closed_by_server()
                for connection in busy:
                    nursery.start_soon(_expect_ok, connection)


async def _expect_ok(connection: RawConnection) -> None:
    response = await connection.read_response()
    assert response is not None
    assert response.status == 200


def _port(running: Service) -> int:
    return int(running.url.rsplit(":", 1)[1])


async def _settles_at(running: Service, baseline: int) -> None:
    # Another process's descriptor table has no event to wait on: poll it (bounded
    # by the caller's fail_after).
    while open_sockets(running.process.pid, _port(running)) > baseline:  # noqa: ASYNC110
        await trio.sleep(0.05)


async def test_hostile_requests_leave_no_socket_behind(driver_environment: dict[str, str]) -> None:
    """A few hundred early answers, abandoned bodies, half-sent headers and idle
    connections: the server's open sockets return to the baseline."""
    driver_environment = {**driver_environment, "LOMASH_HTTP_KEEP_ALIVE_S": "1"}
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S * 2):
            warm = await client.connect()
            await answered_again(warm)
            await warm.aclose()
            pid = running.process.pid
            port = _port(running)
            await _settles_at(running, 1)  # the listener alone: the warm-up's socket gone
            baseline = open_sockets(pid, port)
            assert baseline == 1

            async def hostile(n: int) -> None:
                connection = await client.connect()
                kind = n % 4
                if kind == 0:  # an early answer's request, left without its body
                    await connection.send(
                        request("POST", "/nowhere", headers={"Content-Length": "500"})
                    )
                elif kind == 1:  # a booking whose body never finishes
                    await connection.send(
                        request(
                            "POST",
                            "/v1/appointments",
                            headers={"Content-Length": "900", "Idempotency-Key": f"k{n}"},
                        )
                        + b'{"type"'
                    )
                elif kind == 2:  # half of a request line
                    await connection.send(b"GET /health/li")
                else:  # a keep-alive client that goes quiet
                    await connection.send(LIVE)
                    await connection.read_response()
                await connection.aclose()

            for start in range(0, 300, 50):
                async with trio.open_nursery() as nursery:
                    for n in range(start, start + 50):
                        nursery.start_soon(hostile, n)
            await _settles_at(running, baseline)
            await answered_again(await client.connect())
        assert not running.logs.named("unhandled_error")


async def test_drain_closes_idle_connections_at_once(driver_environment: dict[str, str]) -> None:
    """SIGTERM with idle keep-alive connections open: they are closed and the process
    exits well before its 20 s drain budget (idle sockets do not hold the drain)."""
    driver_environment = {
        **driver_environment,
        "LOMASH_HTTP_KEEP_ALIVE_S": "60",
        "LOMASH_DRAIN_TIMEOUT_S": "20",
    }
    async with service(driver_environment) as running, open_client(running.url) as client:
        connections = []
        with trio.fail_after(BOUND_S):
            for _ in range(5):
                connection = await client.connect()
                await answered_again(connection)
                connections.append(connection)
        with trio.fail_after(10):
            running.signal(signal.SIGTERM)
            for connection in connections:
                assert await connection.closed_by_server()
            assert await running.process.wait() == 0


async def test_http2_prior_knowledge_is_not_spoken_unless_configured(
    driver_environment: dict[str, str],
) -> None:
    """The HTTP/2 preface gets an HTTP/1.1 answer (no HTTP/2 frames); with
    LOMASH_HTTP_H2C=1 the h2c upgrade is honoured (101) by the hypercorn driver (the
    lean one is HTTP/1.1 only: the settings refuse h2c with it, tests/test_config.py)."""
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            connection = await client.connect()
            await connection.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            answer = await connection.read_response()
            assert answer is not None
            assert answer.status in (400, 404, 505)
    if driver_environment["LOMASH_HTTP_DRIVER"] == "lean":
        return
    driver_environment = {**driver_environment, "LOMASH_HTTP_H2C": "1"}
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            connection = await client.connect()
            await connection.send(H2C_UPGRADE)
            switched = await connection.read_response()
            assert switched is not None
            assert switched.status == 101


async def test_connections_waiting_for_a_body_make_room_at_the_cap(
    driver_environment: dict[str, str],
) -> None:
    """Three connections declare a body and send none: at a cap of 3 they are not
    "busy", so a health check still gets in (the one waiting longest is closed)."""
    driver_environment = {**driver_environment, "LOMASH_HTTP_MAX_CONNECTIONS": "3"}
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            stalled = []
            for n in range(3):
                connection = await client.connect()
                answered = len(running.logs.named("request"))
                await connection.send(
                    request("POST", "/nowhere", headers={"Content-Length": "100"})
                    if n
                    else request(
                        "POST",
                        "/v1/appointments",
                        headers={"Content-Length": "100", "Idempotency-Key": "never"},
                    )
                )
                if n:  # the early answers are decided; they wait for the body now
                    await running.logs.wait_for("request", answered + 1)
                stalled.append(connection)
            health = await client.connect()
            await answered_again(health)
            assert await stalled[0].closed_by_server()


async def test_a_chunked_body_past_the_limit_is_413_and_not_kept(
    driver_environment: dict[str, str],
) -> None:
    """A chunked body that never ends (1 KiB chunks past LOMASH_MAX_BODY_BYTES): 413
    payload_too_large, then the connection closes; the server reads no further."""
    driver_environment = {**driver_environment, "LOMASH_MAX_BODY_BYTES": "4096"}
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            for path in ("/_test/echo", "/v1/appointments"):
                connection = await client.connect()
                await connection.send(
                    request(
                        "POST",
                        path,
                        headers={
                            "Transfer-Encoding": "chunked",
                            "Content-Type": "application/json",
                            "Idempotency-Key": "chunky",
                        },
                    )
                )
                chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
                for _ in range(8):
                    await connection.send(chunk)
                response = await connection.read_response()
                assert response is not None
                assert (path, response.status, response.code) == (path, 413, "payload_too_large")
                assert await connection.closed_by_server()
