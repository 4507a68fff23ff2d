"""The fault injector's latency mode and counters, on trio's virtual clock.

An echo server and the proxy both run on loopback in the test's own trio run: data
sent there is readable at once, so the clock only moves when every task waits for a
deadline, and every duration below is exact virtual time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from chaos import Proxy, open_proxy

BOUND_S = 60.0  # virtual seconds: a test that hangs fails here instead
DELAY_S = 2.0
# Distinct contents and sizes, so a lost, doubled or reordered chunk shows.
CHUNKS = [bytes([ord("a") + k]) * (1000 * (k + 1)) for k in range(4)]
GAP_S = 0.1  # between the pipelined chunks' sends


@asynccontextmanager
async def echo_server(port: int = 0) -> AsyncIterator[int]:
    """A server on 127.0.0.1 (``port``, or any) sending back whatever it receives;
    yields its port."""

    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        await nursery.start(trio.serve_listeners, echo, listeners)
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def connect(proxy: Proxy) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", proxy.port)


async def receive(stream: trio.SocketStream, size: int) -> list[tuple[float, bytes]]:
    """``size`` bytes from ``stream``, as (virtual time of arrival, data) per read."""
    reads: list[tuple[float, bytes]] = []
    got = 0
    while got < size:
        data = await stream.receive_some(size - got)
        assert data, "closed early"
        reads.append((trio.current_time(), data))
        got += len(data)
    return reads


async def round_trip(stream: trio.SocketStream, data: bytes) -> float:
    """Send ``data``, read its echo back; the virtual seconds it took."""
    started = trio.current_time()
    await stream.send_all(data)
    reads = await receive(stream, len(data))
    assert b"".join(chunk for _, chunk in reads) == data
    return trio.current_time() - started


def arrivals(reads: list[tuple[float, bytes]], chunks: list[bytes]) -> list[float]:
    """When the last byte of each of ``chunks`` (sent one after another) was read."""
    times: list[float] = []
    end = 0
    got = 0
    pending = iter(reads)
    for chunk in chunks:
        end += len(chunk)
        while got < end:
            at, data = next(pending)
            got += len(data)
        times.append(at)
    return times


async def test_slowed_round_trip_on_a_new_connection_takes_twice_the_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Slowed by 2 s, a connection opened afterwards echoes in 4 s: 2 s each way."""
    with trio.fail_after(BOUND_S):
        async with echo_server() as port, open_proxy(port) as proxy:
            proxy.slow(DELAY_S)
            async with await connect(proxy) as stream:
                elapsed = await round_trip(stream, b"ping")
    assert 2 * DELAY_S <= elapsed < 2 * DELAY_S + 0.5


async def test_pipelined_chunks_each_arrive_the_delay_late_and_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """On an open connection, chunks sent 0.1 s apart come back 4 s after each was sent,
    0.1 s apart (not 4 s apart), intact and in order, and the counters count both ways."""
    total = sum(map(len, CHUNKS))
    with trio.fail_after(BOUND_S):
        async with (
            echo_server() as port,
            open_proxy(port) as proxy,
            await connect(proxy) as stream,
        ):
            proxy.slow(DELAY_S)
            started = trio.current_time()
            reads: list[tuple[float, bytes]] = []

            async def read_all() -> None:
                reads.extend(await receive(stream, total))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_all)
                sent: list[float] = []
                for chunk in CHUNKS:
                    sent.append(trio.current_time())
                    await stream.send_all(chunk)
                    await trio.sleep(GAP_S)
                # Offered at once, delivered DELAY_S later.
                assert (proxy.bytes_offered, proxy.bytes_up) == (total, 0)
                # Every chunk is upstream (and echoed) by now; none is back yet.
                await trio.sleep_until(started + DELAY_S + 1.0)
                assert (proxy.bytes_up, proxy.bytes_down) == (total, 0)
            await trio.testing.wait_all_tasks_blocked()  # the last count is in
            assert (proxy.bytes_up, proxy.bytes_down) == (total, total)
    assert b"".join(data for _, data in reads) == b"".join(CHUNKS)
    for at, then in zip(arrivals(reads, CHUNKS), sent, strict=True):
        assert then + 2 * DELAY_S <= at < then + 2 * DELAY_S + 0.5


async def test_forward_removes_the_delay_for_the_next_round_trip(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """After forward(), open and new connections echo at once again."""
    with trio.fail_after(BOUND_S):
        async with echo_server() as port, open_proxy(port) as proxy:
            async with await connect(proxy) as stream:
                proxy.slow(DELAY_S)
                assert await round_trip(stream, b"slow") >= 2 * DELAY_S
                proxy.forward()
                assert proxy.delay_s == 0
                assert await round_trip(stream, b"fast") == 0
            async with await connect(proxy) as stream:
                assert await round_trip(stream, b"new") == 0
            await trio.testing.wait_all_tasks_blocked()  # the last count is in
            assert (proxy.accepted, proxy.bytes_up, proxy.bytes_down) == (2, 11, 11)


async def test_the_delay_is_read_when_a_chunk_arrives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A chunk held when forward() comes keeps its delay; one arriving after it, with no
    delay, still waits its turn behind it; the next goes through at once."""
    with trio.fail_after(BOUND_S):
        async with (
            echo_server() as port,
            open_proxy(port) as proxy,
            await connect(proxy) as stream,
        ):
            started = trio.current_time()
            proxy.slow(DELAY_S)
            await stream.send_all(b"first")
            await trio.sleep(1.0)
            proxy.forward()
            await stream.send_all(b"second")
            reads = await receive(stream, len(b"firstsecond"))
            assert b"".join(data for _, data in reads) == b"firstsecond"
            # Up late (2 s), back at once: both at 2 s, "second" behind "first".
            assert all(at == started + DELAY_S for at, _ in reads)
            assert await round_trip(stream, b"third") == 0


async def test_an_upstream_that_refuses_closes_the_client_and_the_proxy_serves_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The upstream is down (its port refuses): each client is closed at once, as the
    server would, and the proxy keeps serving once it is back."""
    with trio.fail_after(BOUND_S):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        for listener in listeners:
            await listener.aclose()  # nothing listens there now: connections are refused
        async with open_proxy(port) as proxy:
            for _ in range(2):
                refused = await connect(proxy)
                assert await refused.receive_some(1) == b""
                await refused.aclose()
            assert proxy.accepted == 2
            async with echo_server(port):
                back = await connect(proxy)
                assert await round_trip(back, b"again") == 0.0  # no delay: not slowed
                await back.aclose()
