"""A raw-socket HTTP/1.1 client for edge tests: exact bytes out, responses parsed in."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import trio


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # names lower-case
    body: bytes

    def json(self) -> dict[str, object]:
        decoded: dict[str, object] = json.loads(self.body)
        return decoded

    @property
    def code(self) -> object:
        error = self.json().get("error")
        return error.get("code") if isinstance(error, dict) else None


class RawConnection:
    """One TCP connection to the service; ``read_response`` parses one answer."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _fill(self) -> bool:
        chunk = await self.stream.receive_some(65536)
        self._buffer += chunk
        return bool(chunk)

    async def read_response(self) -> RawResponse | None:
        """The next response, or None if the server closed the connection first."""
        while b"\r\n\r\n" not in self._buffer:
            if not await self._fill():
                return None
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self._buffer) < length:
            if not await self._fill():
                break
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return RawResponse(int(status_line.split(" ")[1]), headers, body)

    async def closed_by_server(self) -> bool:
        """Waits until the server closes (True) or sends more bytes (False)."""
        try:
            return not await self._fill()
        except trio.BrokenResourceError:  # reset: closed too
            return True

    async def aclose(self) -> None:
        await self.stream.aclose()


class RawClient:
    """Opens raw connections to one service and closes them all at the end."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        self._address = (parts.hostname, parts.port)
        self._open: list[RawConnection] = []

    async def connect(self) -> RawConnection:
        connection = RawConnection(await trio.open_tcp_stream(*self._address))
        self._open.append(connection)
        return connection

    async def aclose(self) -> None:
        for connection in self._open:
            await connection.aclose()


@asynccontextmanager
async def open_client(url: str) -> AsyncIterator[RawClient]:
    client = RawClient(url)
    try:
        yield client
    finally:
        with trio.move_on_after(5, shield=True):  # closing sockets: immediate
            await client.aclose()


def request(
    method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    given = {"Content-Length": str(len(body))} if body else {}
    given.update(headers or {})
    lines.extend(f"{name}: {value}" for name, value in given.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def open_sockets(pid: int, port: int) -> int:
    """How many TCP sockets of process ``pid`` have local port ``port`` (the listener
    and the connections it accepted; not the process's database or Redis pools)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    fds = f"/proc/{pid}/fd"
    count = 0
    for name in os.listdir(fds):
        try:
            target = os.readlink(f"{fds}/{name}")
        except FileNotFoundError:  # closed while listing
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count
