"""A name registry: finds an actor's address by name, anywhere in a tree."""

from __future__ import annotations

from typing import Any

from supervisors._actor import ActorRef
from supervisors._errors import ActorUnavailable, SupervisionError

__all__ = ["Registry"]


class Registry:
    """Names -> addresses. Supervisors register their actor children on add.

    Addresses outlive restarts, so a name keeps pointing at the same ``ActorRef``
    while its actor crashes and restarts; it is removed only when the actor is
    removed for good.
    """

    def __init__(self) -> None:
        self._refs: dict[str, ActorRef[Any, Any]] = {}

    def register(self, ref: ActorRef[Any, Any]) -> None:
        existing = self._refs.get(ref.name)
        if existing is not None and existing is not ref:
            raise SupervisionError(
                f"an actor named {ref.name!r} is already registered",
                supervisor="registry",
                child=ref.name,
            )
        self._refs[ref.name] = ref

    def unregister(self, name: str) -> None:
        self._refs.pop(name, None)

    def discard(self, ref: ActorRef[Any, Any]) -> None:
        """Remove ``ref`` if its name still points at it (a newer namesake stays)."""
        if self._refs.get(ref.name) is ref:
            del self._refs[ref.name]

    def lookup(self, name: str) -> ActorRef[Any, Any]:
        try:
            return self._refs[name]
        except KeyError:
            raise ActorUnavailable(name, reason="no such actor") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._refs))
