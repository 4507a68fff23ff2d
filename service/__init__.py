"""The process: the composition root (the supervision tree), the launcher with its
signals and worker processes, logging, and the ``lomash`` command."""

from service._cli import Launcher, main
from service._serve import serve
from service._tree import Extension, build_tree, database_breaker

__all__ = [
    "Extension",
    "Launcher",
    "build_tree",
    "database_breaker",
    "main",
    "serve",
]
