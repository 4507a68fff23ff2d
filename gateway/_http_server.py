"""The HTTP server: hypercorn's HTTP/1.1 protocol on trio, driven by us (or, with
``LOMASH_HTTP_DRIVER=lean``, the lean h11 driver of ``gateway._lean_http``).

``hypercorn.trio.serve`` leaves holes a hostile client can use, so this module owns
the accept loop and the per-connection driver while keeping hypercorn's protocol
classes (h11 parsing and strictness, pipelining, keep-alive, graceful drain):

- Every event the protocol sends on a connection (bytes, close, idle) is finished
  under a shield bounded by ``send_timeout_s``. An app whose request task is
  cancelled while it sends (quart-trio cancels its request when the client's
  disconnect arrives) would otherwise leave the connection half-recycled: never
  closed, with no idle timeout, the next request never read. A client that stops
  reading is disconnected after ``send_timeout_s`` instead of holding its task.
- A connection cap (``max_connections``): at the cap the oldest idle keep-alive
  connection is closed to make room, else the one that has waited longest for its
  request's body (a client that declares a body and sends none is not "busy"); with
  neither, the newcomer gets a 503 with ``Retry-After`` and is closed.
- Idle keep-alive connections close after ``keep_alive_s`` and at once on drain.
- HTTP/2 over plain HTTP (h2c upgrade, prior knowledge) only when ``h2c`` is set.
- No ``Server`` banner.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import hypercorn.config
import structlog
import trio
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import parse_socket_addr, repr_socket_addr, wrap_app

from config import HttpDriver, HttpSettings, Settings
from gateway._connections import CURRENT_CONNECTION, ConnectionLimiter, shed
from gateway._lean_http import LeanConnection

__all__ = ["HttpServer", "hypercorn_config", "serve_http"]

log = structlog.get_logger("gateway.http")


def hypercorn_config(bind: str, http: HttpSettings, *, graceful_timeout_s: float) -> Any:
    config = hypercorn.config.Config()
    config.bind = [bind]
    config.graceful_timeout = graceful_timeout_s
    config.keep_alive_timeout = http.keep_alive_s
    config.include_server_header = False
    config.accesslog = None  # the app logs one canonical line per request
    config.loglevel = "WARNING"  # our structlog lines say what hypercorn would
    return config


class _HTTP11Only(H11Protocol):
    """HTTP/1.1 without the switches to HTTP/2 (h2c upgrade, PRI prior knowledge)."""

    async def _check_protocol(self, event: Any) -> None:
        return None


class _Connection(TCPServer):
    """hypercorn's TCPServer with bounded, shielded sends and our protocol choice."""

    def __init__(
        self,
        app: Any,
        config: Any,
        context: WorkerContext,
        state: dict[str, Any],
        stream: trio.SocketStream,
        *,
        http: HttpSettings,
        limiter: ConnectionLimiter,
        cut: trio.CancelScope,
    ) -> None:
        super().__init__(app, config, context, state, stream)  # type: ignore[arg-type]
        self._http = http
        self.limiter = limiter
        self._cut = cut
        # Cancelled to close the connection at once (the limiter making room).
        self.aborting = trio.CancelScope()

    async def run(self) -> None:
        CURRENT_CONNECTION.set(self)
        socket = self.stream.socket
        try:
            client = parse_socket_addr(socket.family, socket.getpeername())
            server = parse_socket_addr(socket.family, socket.getsockname())
            with self.aborting:
                async with TaskGroup() as task_group:
                    self._task_group = task_group
                    args = (
                        self.app,
                        self.config,
                        self.context,
                        task_group,
                        ConnectionState(self.state),
                        False,
                        client,
                        server,
                        self.protocol_send,
                    )
                    protocol: Any = (
                        ProtocolWrapper(*args, "http/1.1") if self._http.h2c else _HTTP11Only(*args)
                    )
                    self.protocol = protocol
                    await self.protocol.initiate()
                    await self.idle_task.restart(self._task_group, self._idle_timeout)
                    await self._read_data()
        except OSError:
            pass
        finally:
            self.limiter.closed(self)
            with trio.move_on_after(self._http.send_timeout_s, shield=True):
                await self._close()

    async def protocol_send(self, event: Event) -> None:
        if self._cut.cancel_called or self.aborting.cancel_called:
            # The drain budget ran out, or the limiter closes this connection: it is
            # cut, not finished (no last-minute 500 for a request that was cancelled).
            await self._protocol_send(event)
            return
        # Finished even if the caller (the app's request task) is being cancelled:
        # a half-done close or recycle would leave the connection open for good.
        with trio.move_on_after(self._http.send_timeout_s, shield=True) as scope:
            await self._protocol_send(event)
        if scope.cancelled_caught:  # the client does not read what we send
            log.info("http_client_not_reading", timeout_s=self._http.send_timeout_s)
            with trio.move_on_after(self._http.send_timeout_s, shield=True):
                await self.stream.aclose()

    async def _protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            async with self.send_lock:
                try:
                    await self.stream.send_all(event.data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.protocol.handle(Closed())
        elif isinstance(event, Closed):
            await self._close()
            await self.protocol.handle(Closed())
        elif isinstance(event, Updated):
            if event.idle:
                await self.idle_task.restart(self._task_group, self._idle_timeout)
            else:
                self.limiter.not_idle(self)
                await self.idle_task.stop()

    async def _idle_timeout(self) -> None:
        # Cancelled by a new request (the idle task stops), ended by the keep-alive
        # timeout, by drain (terminated), or by the limiter making room.
        with trio.move_on_after(self.config.keep_alive_timeout) as scope:
            self.limiter.idle(self, scope)
            try:
                await self.context.terminated.wait()
            finally:
                self.limiter.not_idle(self)
        with trio.move_on_after(self._http.send_timeout_s, shield=True):
            await self._initiate_server_close()


async def serve_http(
    app: Any,
    config: Any,
    http: HttpSettings,
    *,
    limiter: ConnectionLimiter,
    retry_after_s: float,
    shutdown_trigger: Callable[[], Awaitable[Any]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns, then drain: the listeners
    close, idle connections close, in-flight requests get ``config.graceful_timeout``.
    Each connection is driven by ``http.driver``: the lean one, or hypercorn's."""
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    state: dict[str, Any] = {}
    lifespan = Lifespan(wrapped, config, state)
    context = WorkerContext(None)
    lean = http.driver is HttpDriver.LEAN
    connections: trio.Nursery  # the handlers' nursery, opened below

    async def connection(stream: trio.SocketStream) -> None:
        if not limiter.admit():
            await shed(stream, retry_after_s, http.send_timeout_s)
            return
        limiter.open += 1
        try:
            if lean:
                await LeanConnection(app, stream, http, limiter, state).run()
            else:
                await _Connection(
                    wrapped,
                    config,
                    context,
                    state.copy(),
                    stream,
                    http=http,
                    limiter=limiter,
                    cut=connections.cancel_scope,
                )
        finally:
            limiter.open -= 1

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            sockets = config.create_sockets()
            listeners = []
            urls = []
            for sock in sockets.insecure_sockets:
                sock.listen(config.backlog)
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                urls.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            try:
                async with trio.open_nursery() as accepting:
                    accepting.start_soon(
                        partial(
                            trio.serve_listeners,
                            connection,
                            listeners,
                            handler_nursery=connections,
                        )
                    )
                    task_status.started(urls)
                    await shutdown_trigger()
                    accepting.cancel_scope.cancel()
            finally:
                for listener in listeners:
                    with trio.move_on_after(http.send_timeout_s, shield=True):
                        await listener.aclose()
                limiter.drain()  # idle connections close now (and none goes idle)
                await context.terminated.set()
                connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


class HttpServer:
    """The HTTP server as a supervised child: ``serve_http`` on ``bind`` with the app
    that ``app_factory`` makes when it starts. Reports the bound URLs when listening
    (``--port 0`` works); stopping closes the listener, then in-flight requests finish
    within ``drain_timeout_s`` before the rest is cancelled."""

    def __init__(self, app_factory: Callable[[], Any], settings: Settings, bind: str):
        self._app_factory = app_factory
        self._settings = settings
        self._bind = bind
        self._stop = trio.Event()
        self.connections = ConnectionLimiter(settings.http.max_connections)

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        settings = self._settings
        config = hypercorn_config(
            self._bind, settings.http, graceful_timeout_s=settings.drain_timeout_s
        )
        app = self._app_factory()
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                partial(
                    serve_http,
                    app,
                    config,
                    settings.http,
                    limiter=self.connections,
                    retry_after_s=settings.unavailable_retry_after_s,
                    shutdown_trigger=self._stop.wait,
                )
            )
            log.info("http_listening", urls=urls)
            task_status.started(urls)

    def request_stop(self, *, final: bool) -> None:
        self._stop.set()
