"""The fault injector: a loopback TCP proxy that cuts, refuses, stalls or slows a dependency.

Tests, benches and chaos experiments put ``Proxy`` between the service and Postgres or
Redis (``async with open_proxy(port) as proxy``) and switch its mode; see chaos/_proxy.py.
"""

from chaos._proxy import Mode, Proxy, open_proxy

__all__ = ["Mode", "Proxy", "open_proxy"]
