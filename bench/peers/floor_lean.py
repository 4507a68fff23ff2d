"""The floor app (bench.peers.floor) on this service's lean HTTP driver, the same
limits and drain as ``lomash serve``: what any route of ours costs at least.

    python -m bench.peers.floor_lean   # binds 127.0.0.1 on a port the kernel picks
"""

from __future__ import annotations

import trio

from bench.peers.floor import app
from config import HttpDriver, HttpSettings
from gateway._connections import ConnectionLimiter
from gateway._http_server import hypercorn_config, serve_http


async def main() -> None:
    http = HttpSettings(driver=HttpDriver.LEAN)
    config = hypercorn_config("127.0.0.1:0", http, graceful_timeout_s=1.0)
    limiter = ConnectionLimiter(http.max_connections)
    await serve_http(
        app, config, http, limiter=limiter, retry_after_s=1.0, shutdown_trigger=trio.sleep_forever
    )


if __name__ == "__main__":
    trio.run(main)
