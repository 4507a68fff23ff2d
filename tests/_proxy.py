"""A TCP proxy on loopback that a test can cut, make refuse, or make stall.

async with open_proxy(upstream_port) as proxy:   # proxy.port forwards to upstream
    proxy.cut()        # drop every open connection (server crash / failover)
    proxy.reset()      # new connections are accepted and closed at once
    proxy.blackhole()  # new connections are accepted and never answered (timeouts)
    proxy.freeze()     # open connections stay open but carry nothing (a stalled server)
    proxy.forward()    # back to normal (open connections flow again)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum

import trio

BUFFER = 65536


class Mode(StrEnum):
    FORWARD = "forward"
    RESET = "reset"
    BLACKHOLE = "blackhole"


class Proxy:
    def __init__(self, upstream_port: int, nursery: trio.Nursery) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.mode = Mode.FORWARD
        self.accepted = 0
        self._nursery = nursery
        self._connections: set[trio.CancelScope] = set()
        self._flowing = trio.Event()
        self._flowing.set()

    def forward(self) -> None:
        self.mode = Mode.FORWARD
        self._flowing.set()

    def freeze(self) -> None:
        """Stop carrying bytes on every connection, old and new, without closing any."""
        if self._flowing.is_set():
            self._flowing = trio.Event()

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
                    upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
                    async with upstream, trio.open_nursery() as pumps:
                        pumps.start_soon(_pump, client, upstream, pumps.cancel_scope, self)
                        pumps.start_soon(_pump, upstream, client, pumps.cancel_scope, self)
            finally:
                self._connections.discard(scope)


async def _pump(
    source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope, proxy: Proxy
) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await source.receive_some(BUFFER):
            await proxy.flowing()
            await sink.send_all(data)
    done.cancel()


@asynccontextmanager
async def open_proxy(upstream_port: int) -> AsyncIterator[Proxy]:
    async with trio.open_nursery() as nursery:
        proxy = Proxy(upstream_port, nursery)
        await nursery.start(proxy.serve)
        yield proxy
        nursery.cancel_scope.cancel()
