"""The one way a settings group refuses a value: ``ValueError("field: why")``, which
the loader turns into ``LOMASH_<VARIABLE>: why``."""

from __future__ import annotations

__all__ = ["check"]


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
