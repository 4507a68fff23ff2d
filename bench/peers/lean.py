"""Two leaner HTTP drivers on trio, to measure what hypercorn's trio worker costs.

    python -m bench.peers.lean h11   # the floor app (bench.peers.floor) behind h11
    python -m bench.peers.lean raw   # no HTTP parsing at all: the trio I/O ceiling

Each binds 127.0.0.1 on a port the kernel picks and serves until killed, one trio
task per connection and nothing per request: no task spawned per request, no
idle-timeout task restarted, no send lock. ``h11`` keeps what a real driver must do
per request (h11 parsing and framing, keep-alive, pipelining, a read timeout as the
deadline of the connection's one cancel scope, the ASGI call); ``raw`` answers every
``\\r\\n\\r\\n`` with a canned response, the most any driver on trio sockets could
reach. Neither is a server to deploy (no drain, no limits on headers, no TLS): they
bound from above what a leaner driver around hypercorn could gain (bench/driver.py).
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any

import h11
import trio

from bench.peers.floor import app

READ_TIMEOUT_S = 5.0
_CANNED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 18\r\n\r\n"
    b'{"status":"alive"}'
)


async def _h11_connection(stream: trio.SocketStream) -> None:
    connection = h11.Connection(h11.SERVER)
    with trio.CancelScope() as idle:
        while True:
            idle.deadline = trio.current_time() + READ_TIMEOUT_S
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                connection.receive_data(data)
                if not data:
                    return
                continue
            if isinstance(event, h11.Request):
                await _asgi_call(connection, stream, event)
            elif isinstance(event, h11.EndOfMessage):
                if connection.our_state is not h11.DONE:
                    return
                connection.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return


async def _asgi_call(connection: h11.Connection, stream: trio.SocketStream, request: Any) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": request.http_version.decode(),
        "method": request.method.decode(),
        "path": request.target.decode(),
        "raw_path": request.target,
        "query_string": b"",
        "headers": list(request.headers),
        "server": None,
        "client": None,
    }

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            response = h11.Response(status_code=message["status"], headers=message["headers"])
            await stream.send_all(connection.send(response) or b"")
        else:
            data = connection.send(h11.Data(data=message["body"])) or b""
            await stream.send_all(data + (connection.send(h11.EndOfMessage()) or b""))

    await app(scope, receive, send)


async def _raw_connection(stream: trio.SocketStream) -> None:
    buffered = b""
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return
        buffered += data
        answers = buffered.count(b"\r\n\r\n")
        if answers:
            buffered = buffered[buffered.rindex(b"\r\n\r\n") + 4 :]
            await stream.send_all(_CANNED * answers)


async def main(kind: str) -> None:
    handler = {"h11": _h11_connection, "raw": _raw_connection}[kind]

    async def serve(stream: trio.SocketStream) -> None:
        try:
            await handler(stream)
        except (trio.BrokenResourceError, h11.ProtocolError):
            pass
        finally:
            await stream.aclose()

    await trio.serve_tcp(serve, 0, host="127.0.0.1")


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "h11")
