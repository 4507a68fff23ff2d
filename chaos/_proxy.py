"""A TCP proxy on loopback that cuts, refuses, stalls or slows the traffic to a dependency.

This is the project's fault injector: the tests put it between the service and
Postgres or Redis to make that dependency fail in a chosen way, and the benches and
the chaos experiments use it the same way. It only ever listens on 127.0.0.1.

async with open_proxy(upstream_port) as proxy:   # proxy.port forwards to upstream
    proxy.cut()        # drop every open connection (server crash / failover)
    proxy.reset()      # new connections are accepted and closed at once
    proxy.blackhole()  # new connections are accepted and never answered (timeouts)
    proxy.freeze()     # open connections stay open but carry nothing (a stalled server)
    proxy.slow(2.0)    # every chunk, both ways, open and new connections, arrives 2 s late
    proxy.forward()    # back to normal (open connections flow again, no delay)

    proxy.accepted     # connections accepted so far (refused and blackholed ones too)
    proxy.bytes_up     # bytes sent on to the upstream (client -> upstream) so far
    proxy.bytes_offered  # bytes clients sent toward the upstream so far, delivered
                         # yet or not (slowed chunks are delivered later)
    proxy.bytes_down   # bytes sent back to the clients (upstream -> client) so far

An upstream that refuses (it is down) gets its clients closed at once, as its own
refusal would; the proxy serves on and forwards again once it is back.

``slow(delay_s)`` is latency, not a bandwidth limit: each direction of a connection
has a task that reads chunks as they come and stamps them with their arrival time,
and a task that sends each one at arrival + ``delay_s``, in order; chunks that arrive
during the delay are held in memory meanwhile (up to ``_HELD_CHUNKS`` per direction;
then the proxy reads no more until one is sent). The delay is read when
a chunk arrives, so changing it (or ``forward()``) does not move chunks already held,
and a chunk that arrived while the delay was 0 is sent at once (after those before
it: the order is kept). ``slow`` leaves the other modes as they are (a frozen proxy
stays frozen, a refusing one refusing); ``forward()`` ends all of them. A connection
ends, both ways, once one side has closed and what it sent before has been delivered.
Time is trio's clock, so under a virtual clock the delays are exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum

import trio

BUFFER = 65536
# Chunks held back per direction of a slowed connection (at most BUFFER bytes each);
# past it the reader waits, and TCP's own flow control slows the sender.
_HELD_CHUNKS = 1024


class Mode(StrEnum):
    """How new connections are treated."""

    FORWARD = "forward"
    RESET = "reset"
    BLACKHOLE = "blackhole"


class Proxy:
    def __init__(self, upstream_port: int, nursery: trio.Nursery) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.mode = Mode.FORWARD
        self.delay_s = 0.0
        self.accepted = 0
        self.bytes_up = 0
        self.bytes_offered = 0
        self.bytes_down = 0
        self._nursery = nursery
        self._connections: set[trio.CancelScope] = set()
        self._flowing = trio.Event()
        self._flowing.set()

    def forward(self) -> None:
        """Back to normal: new connections forwarded, bytes flowing, no delay."""
        self.mode = Mode.FORWARD
        self.delay_s = 0.0
        self._flowing.set()

    def freeze(self) -> None:
        """Stop carrying bytes on every connection, old and new, without closing any."""
        if self._flowing.is_set():
            self._flowing = trio.Event()

    def slow(self, delay_s: float) -> None:
        """Deliver every chunk arriving from now on, both ways, ``delay_s`` after it came."""
        if not delay_s >= 0:
            raise ValueError(f"delay_s must be >= 0, not {delay_s!r}")
        self.delay_s = delay_s

    async def flowing(self) -> None:
        while not self._flowing.is_set():
            await self._flowing.wait()

    def reset(self) -> None:
        self.mode = Mode.RESET
        self.cut()

    def blackhole(self) -> None:
        self.mode = Mode.BLACKHOLE
        self.cut()

    def cut(self) -> None:
        for scope in list(self._connections):
            scope.cancel()

    async def serve(self, *, task_status: trio.TaskStatus[int]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners, handler_nursery=self._nursery)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        with trio.CancelScope() as scope:
            self._connections.add(scope)
            try:
                async with client:
                    if self.mode is Mode.RESET:
                        return
                    if self.mode is Mode.BLACKHOLE:
                        await trio.sleep_forever()
                    try:
                        upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
                    except OSError:
                        return  # the upstream refuses (it is down): so does the proxy
                    async with upstream, trio.open_nursery() as pipes:
                        self._pipe(pipes, client, upstream, up=True)
                        self._pipe(pipes, upstream, client, up=False)
            finally:
                self._connections.discard(scope)

    def _pipe(
        self, pipes: trio.Nursery, source: trio.SocketStream, sink: trio.SocketStream, *, up: bool
    ) -> None:
        """One direction of a connection: a task reads and stamps, a task delivers."""
        chunks = trio.open_memory_channel[tuple[float, bytes]](_HELD_CHUNKS)
        pipes.start_soon(self._read, source, chunks[0], up)
        pipes.start_soon(self._write, chunks[1], sink, up, pipes.cancel_scope)

    async def _read(
        self,
        source: trio.SocketStream,
        chunks: trio.MemorySendChannel[tuple[float, bytes]],
        up: bool,
    ) -> None:
        """Stamp each chunk with when it is due; the end (or a failure) closes ``chunks``."""
        async with chunks:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                while data := await source.receive_some(BUFFER):
                    if up:
                        self.bytes_offered += len(data)
                    due = trio.current_time() + self.delay_s
                    await self.flowing()  # frozen: hold this chunk, read no more
                    await chunks.send((due, data))  # full: read no more for now

    async def _write(
        self,
        chunks: trio.MemoryReceiveChannel[tuple[float, bytes]],
        sink: trio.SocketStream,
        up: bool,
        done: trio.CancelScope,
    ) -> None:
        """Send each chunk when it is due, in order; then end the connection."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async with chunks:
                async for due, data in chunks:
                    await trio.sleep_until(due)
                    await self.flowing()
                    await sink.send_all(data)
                    if up:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
        done.cancel()


@asynccontextmanager
async def open_proxy(upstream_port: int) -> AsyncIterator[Proxy]:
    async with trio.open_nursery() as nursery:
        proxy = Proxy(upstream_port, nursery)
        await nursery.start(proxy.serve)
        yield proxy
        nursery.cancel_scope.cancel()
