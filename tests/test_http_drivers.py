"""What each HTTP driver (LOMASH_HTTP_DRIVER: hypercorn, lean) must protect, with raw
sockets against a real ``lomash serve``: pipelining, slow request heads, oversized
headers, half-closed clients, ``Expect: 100-continue``. The rest of the edge (idle
keep-alive, bodies that never come, the connection cap, drain, hostile floods) runs
for each driver in tests/test_http_edge.py and the SIGTERM tests in
tests/test_process.py."""

from __future__ import annotations

import contextlib
import socket

import trio

from tests._raw_http import open_client, request
from tests.test_http_edge import answered_again
from tests.test_process import BOUND_S, driver_environment, environment, service

# The fixtures, used by name below: every test runs once per HTTP driver.
__all__ = ["driver_environment", "environment"]


async def test_pipelined_requests_are_answered_in_order_on_one_connection(
    driver_environment: dict[str, str],
) -> None:
    """Five requests in one write, of three kinds of route: five answers, in order,
    and the connection still serves."""
    paths = ["/health/live", "/v1/showrooms", "/nowhere", "/v1/products", "/health/live"]
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            connection = await client.connect()
            await connection.send(b"".join(request("GET", path) for path in paths))
            statuses = []
            for _ in paths:
                answer = await connection.read_response()
                assert answer is not None
                statuses.append(answer.status)
            assert statuses == [200, 200, 404, 200, 200]
            await answered_again(connection)


async def test_a_trickled_request_head_is_cut_at_the_keep_alive_deadline(
    driver_environment: dict[str, str],
) -> None:
    """Slowloris: a head sent a byte every 0.2 s (it would take 12 s) is cut once
    LOMASH_HTTP_KEEP_ALIVE_S (1 s) has passed, before the client has sent it all."""
    driver_environment = {**driver_environment, "LOMASH_HTTP_KEEP_ALIVE_S": "1"}
    head = request("GET", "/health/live", headers={"X-Slow": "s" * 20})
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            connection = await client.connect()
            sent = 0
            try:
                for byte in head:
                    await connection.send(bytes([byte]))
                    sent += 1
                    await trio.sleep(0.2)
            except trio.BrokenResourceError:
                pass  # cut while trickling
            assert sent < len(head)
            assert await connection.closed_by_server()


async def test_oversized_headers_are_431_and_the_connection_closes(
    driver_environment: dict[str, str],
) -> None:
    """An 8 KiB header is served; 80 KiB (more than one read) is refused 431 and the
    connection closed. The lean driver holds a whole head to 16 KiB (h11 checks only
    a head still incomplete, so hypercorn takes up to a read's 64 KiB): 20 KiB is 431
    there too."""
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            connection = await client.connect()
            await connection.send(request("GET", "/health/live", headers={"X-Big": "b" * 8192}))
            served = await connection.read_response()
            assert served is not None
            assert served.status == 200
            sizes = [81920]
            if driver_environment["LOMASH_HTTP_DRIVER"] == "lean":
                sizes.append(20480)
            for size in sizes:
                connection = await client.connect()
                await connection.send(request("GET", "/health/live", headers={"X-Big": "b" * size}))
                refused = await connection.read_response()
                assert refused is not None
                assert refused.status == 431
                assert await connection.closed_by_server()


async def test_a_half_closed_client_still_gets_its_answer(
    driver_environment: dict[str, str],
) -> None:
    """A client that sends its request and then shuts its sending side: the lean
    driver writes the whole answer (an EOF after a whole request means no more
    requests, not that nobody reads), then closes. hypercorn may take the EOF for the
    client leaving and close without an answer (it races the answer: seen both ways);
    either way the connection ends."""
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            # The fast route, and one through Quart (which watches for a disconnect).
            for path, status in (("/v1/showrooms", 200), ("/nowhere", 404)):
                connection = await client.connect()
                await connection.send(request("GET", path))
                connection.stream.socket.shutdown(socket.SHUT_WR)
                answer = await connection.read_response()
                if driver_environment["LOMASH_HTTP_DRIVER"] == "hypercorn" and answer is None:
                    continue  # it took the EOF for the client leaving (a race, see above)
                assert answer is not None
                assert answer.status == status
                assert answer.json()
                assert await connection.closed_by_server()


async def test_expect_100_continue_gets_the_interim_answer_before_the_body(
    driver_environment: dict[str, str],
) -> None:
    """A client that waits for ``100 Continue`` before sending its body gets it, and
    then the answer to the request with that body."""
    body = b'{"not": "a booking"}'
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Expect": "100-continue",
        "Idempotency-Key": "expect-100",
    }
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            connection = await client.connect()
            await connection.send(request("POST", "/v1/appointments", headers=headers))
            interim = await connection.read_response()
            assert interim is not None
            assert interim.status == 100
            await connection.send(body)
            answer = await connection.read_response()
            assert answer is not None
            assert answer.status == 422
            assert answer.code == "invalid_field"


async def test_a_client_that_does_not_read_is_cut_after_the_send_timeout(
    driver_environment: dict[str, str],
) -> None:
    """A client asks for the Swagger bundle (about 1.4 MB) twenty times in one write
    and reads nothing: once the socket buffers are full the write waits, and after
    LOMASH_HTTP_SEND_TIMEOUT_S (1 s) the connection is cut (logged); another client is
    served meanwhile and after."""
    driver_environment = {**driver_environment, "LOMASH_HTTP_SEND_TIMEOUT_S": "1"}
    async with service(driver_environment) as running, open_client(running.url) as client:
        with trio.fail_after(BOUND_S):
            other = await client.connect()
            stuck = await client.connect()

            async def flood() -> None:
                with contextlib.suppress(trio.BrokenResourceError):
                    await stuck.send(request("GET", "/docs/swagger-ui-bundle.js") * 20)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                await running.logs.wait_for("http_client_not_reading")
                await other.send(request("GET", "/health/live"))
                served = await other.read_response()
                assert served is not None
                assert served.status == 200
            while not await stuck.closed_by_server():
                pass  # what the kernel had buffered, then the end
