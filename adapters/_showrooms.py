"""Showrooms: the record, the store Protocol, and its Postgres implementation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from adapters._postgres import Connection, Database

__all__ = ["LIST_SQL", "PostgresShowrooms", "Showroom", "ShowroomStore"]


@dataclass(frozen=True, slots=True)
class Showroom:
    id: str
    name: str
    address: str
    city: str
    postcode: str
    timezone: str


class ShowroomStore(Protocol):
    async def list_showrooms(self) -> list[Showroom]: ...


LIST_SQL = "SELECT id, name, address, city, postcode, timezone FROM showrooms ORDER BY name, id"


class PostgresShowrooms:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def list_showrooms(self) -> list[Showroom]:
        return await self._database.run(_list, readonly=True)


async def _list(connection: Connection) -> list[Showroom]:
    rows = await connection.fetch(LIST_SQL)
    return [Showroom(*row) for row in rows]
