"""A scriptable HTTP/1.1 server on 127.0.0.1 for provider fakes.

It runs in a thread of its own (the tests use real time), so a test flips its
``Behaviour`` from anywhere: answer normally, fail with a given answer, stall (read
the request and never answer), slow down, or cut the connection. Subclasses say
what a normal answer is (``respond``); every request received is recorded with the
outcome it was given.
"""

from __future__ import annotations

import json
import socket
import threading
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self, cast
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "Action",
    "Behaviour",
    "FakeHttpServer",
    "Headers",
    "Mode",
    "Received",
    "Reply",
    "Request",
    "json_reply",
]

type Mode = Literal["ok", "fail", "stall", "slow", "cut"]
type Headers = tuple[tuple[str, str], ...]

_JOIN_S = 5.0


@dataclass(frozen=True, slots=True)
class Request:
    """One request as it arrived: the target's path and query apart, headers in order."""

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    def header(self, name: str) -> str | None:
        """The first header of that name (any case), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """The form-encoded body (the last value of a repeated field wins)."""
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass(frozen=True, slots=True)
class Received(Request):
    """A request and what it got: ``status`` is None when it got no answer (yet)."""

    outcome: Mode
    status: int | None

    @classmethod
    def of(cls, request: Request, outcome: Mode, status: int | None) -> Received:
        return cls(
            request.method,
            request.path,
            request.query,
            request.headers,
            request.body,
            outcome,
            status,
        )


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes = b""
    headers: Headers = ()


def json_reply(status: int, document: Any, headers: Iterable[tuple[str, str]] = ()) -> Reply:
    return Reply(
        status,
        json.dumps(document).encode(),
        (("Content-Type", "application/json"), *headers),
    )


def _reply_of(
    status: int, body: bytes | Mapping[str, Any], headers: Mapping[str, str] | None
) -> Reply:
    extra = tuple((headers or {}).items())
    if isinstance(body, bytes):
        return Reply(status, body, extra)
    if any(name.lower() == "content-type" for name, _ in extra):
        return Reply(status, json.dumps(body).encode(), extra)
    return json_reply(status, body, extra)


@dataclass(frozen=True, slots=True)
class Action:
    """What to do with one request; ``release`` is the event a stalled request waits on."""

    mode: Mode
    reply: Reply | None = None
    delay_s: float = 0.0
    release: threading.Event = field(default_factory=threading.Event)


class Behaviour:
    """The fault script, safe to flip from any thread. A fault given ``times=N`` applies
    to the next N requests, then answers are normal again; ``times=None`` keeps it
    until told otherwise."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._action = Action("ok", release=self._release)
        self._times: int | None = None

    def _set(self, mode: Mode, times: int | None, **options: Any) -> None:
        if times is not None and times < 1:
            raise ValueError(f"times must be positive or None, not {times}")
        with self._lock:
            if mode == "stall" and self._release.is_set():
                self._release = threading.Event()
            self._action = Action(mode, release=self._release, **options)
            self._times = times

    def ok(self) -> None:
        """Answer normally, and let stalled requests go on to their normal answer."""
        with self._lock:
            self._action = Action("ok", release=self._release)
            self._times = None
            self._release.set()

    def fail(
        self,
        status: int,
        body: bytes | Mapping[str, Any] = b"",
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``status`` with ``body`` (a mapping is sent as JSON)."""
        self._set("fail", times, reply=_reply_of(status, body, headers))

    def stall(self, times: int | None = None) -> None:
        """Read the request and never answer, until ``ok()`` or the server stops."""
        self._set("stall", times)

    def slow(self, delay_s: float, times: int | None = None) -> None:
        """Answer normally after ``delay_s``."""
        self._set("slow", times, delay_s=delay_s)

    def cut(self, times: int | None = None) -> None:
        """Read the request, then close the connection without answering."""
        self._set("cut", times)

    def take(self) -> Action:
        """The action for the next request (counts it against ``times``)."""
        with self._lock:
            action = self._action
            if self._times is not None:
                self._times -= 1
                if self._times == 0:
                    self._action = Action("ok", release=self._release)
                    self._times = None
            return action

    def release(self) -> None:
        """Wake every stalled request (the server is stopping)."""
        with self._lock:
            self._release.set()


class _Listener(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeHttpServer) -> None:
        self.fake = fake
        self.handlers: list[threading.Thread] = []
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self.lock:
            self.handlers = [alive for alive in self.handlers if alive.is_alive()]
            self.handlers.append(thread)
        thread.start()


class _Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server: _Listener

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the record of requests says what happened."""

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        request = Request(
            self.command,
            parts.path or "/",
            parts.query,
            tuple(self.headers.items()),
            self._read_body(),
        )
        action = fake.behaviour.take()
        if action.mode in ("cut", "stall"):
            fake._record(Received.of(request, action.mode, None))
            if action.mode == "stall":
                action.release.wait()
            if action.mode == "cut" or fake.stopping:
                self.close_connection = True
                return
            self._send(fake._respond(request))
            return
        if action.mode == "slow" and fake._stopped.wait(action.delay_s):
            fake._record(Received.of(request, action.mode, None))
            self.close_connection = True
            return
        reply = action.reply if action.reply is not None else fake._respond(request)
        fake._record(Received.of(request, action.mode, reply.status))
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class FakeHttpServer:
    """The scriptable server: ``respond`` is the normal answer (404 here: subclass it).
    ``with FakeHttpServer() as server: server.url`` starts and stops its thread."""

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._listener: _Listener | None = None
        self._thread: threading.Thread | None = None

    def respond(self, request: Request) -> Reply:
        return Reply(404, b"not found", (("Content-Type", "text/plain"),))

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return cast(int, self._listener.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    @property
    def requests(self) -> list[Received]:
        """Every request received so far, in order of arrival."""
        with self._lock:
            return list(self._received)

    def ok(self) -> None:
        self.behaviour.ok()

    def fail(
        self,
        status: int,
        body: bytes | Mapping[str, Any] = b"",
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        self.behaviour.fail(status, body, headers, times)

    def stall(self, times: int | None = None) -> None:
        self.behaviour.stall(times)

    def slow(self, delay_s: float, times: int | None = None) -> None:
        self.behaviour.slow(delay_s, times)

    def cut(self, times: int | None = None) -> None:
        self.behaviour.cut(times)

    def _record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    def _respond(self, request: Request) -> Reply:
        try:
            return self.respond(request)
        except Exception:
            return Reply(500, traceback.format_exc().encode(), (("Content-Type", "text/plain"),))

    def start(self) -> None:
        if self._listener is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        self._stopped.clear()
        self._listener = _Listener(self)
        self._thread = threading.Thread(
            target=self._listener.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening, drop open connections and release stalled requests."""
        listener, thread = self._listener, self._thread
        if listener is None or thread is None:
            return
        self._stopped.set()
        self.behaviour.release()
        listener.shutdown()
        thread.join()
        with listener.lock:
            connections, handlers = list(listener.connections), list(listener.handlers)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for handler in handlers:
            handler.join(_JOIN_S)
        listener.server_close()
        self._listener = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
