"""The HTTP face: the routes (Quart-Trio, and the hot booking route in front of it),
the one error table, and the server that drives hypercorn's protocol for us."""

from gateway._app import Lifecycle, Services, create_app
from gateway._budget import RequestBudget
from gateway._edge import EdgeGuard
from gateway._fast import FastRoutes
from gateway._http_server import HttpServer

__all__ = [
    "EdgeGuard",
    "FastRoutes",
    "HttpServer",
    "Lifecycle",
    "RequestBudget",
    "Services",
    "create_app",
]
