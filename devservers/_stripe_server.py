"""``python -m devservers._stripe_server``: localstripe (a stateful Stripe API server)
on 127.0.0.1, on a port the kernel picks, printed as ``listening <port>`` first.

localstripe's own command binds every interface on a fixed port; this runs its app
on a loopback socket instead. It is a development and test tool (GPL), run as its
own process: the service never imports it.
"""

from __future__ import annotations

import socket


def main() -> None:
    from aiohttp import web
    from localstripe.server import app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"listening {sock.getsockname()[1]}", flush=True)
    web.run_app(app, sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
