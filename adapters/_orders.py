"""Orders on Postgres: placing one (prices read at order time), attaching its
PaymentIntent once, reading it back.

Idempotency: an order remembers the Idempotency-Key it was placed with (and the
request's hash), so a retry after Stripe failed finds the same order; once it has
its PaymentIntent, the answer is stored in ``idempotency_keys`` like a booking's and
replayed as is.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from adapters._outbox import OutboxJob, add_many_to_outbox
from adapters._postgres import Connection, Database
from supervisors import InvalidRequest

__all__ = [
    "EventOutcome",
    "NewOrder",
    "Order",
    "OrderLine",
    "OrderStore",
    "Placed",
    "PostgresOrderStore",
    "Priced",
]


@dataclass(frozen=True, slots=True)
class OrderLine:
    product_id: str
    quantity: int
    unit_price_pence: int


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    reference: str
    status: str
    subtotal_pence: int
    vat_pence: int
    total_pence: int
    currency: str
    lines: tuple[OrderLine, ...]
    payment_intent_id: str | None
    client_secret: str | None
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class NewOrder:
    """What the customer asked for: (product, quantity) in their order, and who."""

    id: str
    reference: str
    items: tuple[tuple[str, int], ...]
    name: str
    email: str
    phone: str
    postcode: str
    idempotency_key: str
    request_hash: bytes
    account_id: str | None = None  # the logged-in customer's (None: a guest's order)


@dataclass(frozen=True, slots=True)
class Priced:
    """The lines at today's prices, and the totals (the caller's arithmetic)."""

    lines: tuple[OrderLine, ...]
    subtotal_pence: int
    vat_pence: int
    total_pence: int


@dataclass(frozen=True, slots=True)
class Placed:
    """The order for this key, new or found again; ``answer`` if it was answered."""

    order: Order
    request_hash: bytes
    answer: tuple[int, str] | None


type Pricing = Callable[[Sequence[OrderLine]], Priced]


@dataclass(frozen=True, slots=True)
class EventOutcome:
    """What a payment event did: ``duplicate`` (seen before: nothing), else the order
    it concerns (None: not one of ours) and its status after (moved or not)."""

    duplicate: bool
    order_id: str | None = None
    status: str | None = None
    moved: bool = False


class OrderStore(Protocol):
    async def place(self, order: NewOrder, price: Pricing) -> Placed:
        """The order placed under ``order.idempotency_key`` (priced by ``price`` from
        the products on sale), or the one placed under it before."""
        ...

    async def attach_intent(
        self, order: Order, intent_id: str, client_secret: str, answer: tuple[int, str]
    ) -> Order:
        """Record the order's PaymentIntent (the first one wins) and store ``answer``
        under its key; the order as it is then."""
        ...

    async def fetch(self, order_id: str) -> Order | None: ...

    async def of_account(self, account_id: str, limit: int) -> list[Order]:
        """The account's orders, newest first (at most ``limit``)."""
        ...

    async def pending_payments(self, older_than_s: float) -> list[tuple[str, str]]:
        """(order id, PaymentIntent id) of orders PENDING_PAYMENT for longer than this."""
        ...

    async def apply_payment_event(
        self,
        event_id: str,
        event_type: str,
        intent_id: str | None,
        move: tuple[str, Sequence[str]] | None,
        notice: Callable[[str], OutboxJob],
    ) -> EventOutcome:
        """Once per ``event_id``, atomically: record the event and, if ``move`` is
        (to, from statuses) and the intent's order is in one of them, move it there
        and write ``notice(order_id)`` to the outbox."""
        ...


class PostgresOrderStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def place(self, order: NewOrder, price: Pricing) -> Placed:
        async def operation(connection: Connection) -> Placed:
            async with connection.transaction():
                return await _place(connection, order, price)

        return await self._database.run(operation)

    async def attach_intent(
        self, order: Order, intent_id: str, client_secret: str, answer: tuple[int, str]
    ) -> Order:
        order_id = order.id

        async def operation(connection: Connection) -> Order:
            async with connection.transaction():
                key = await connection.fetchval(
                    """UPDATE orders SET payment_intent_id = $2, client_secret = $3,
                       updated_at = now()
                       WHERE id = $1 AND payment_intent_id IS NULL
                       RETURNING idempotency_key""",
                    uuid.UUID(order_id),
                    intent_id,
                    client_secret,
                )
                if key is not None:
                    await connection.execute(
                        """INSERT INTO idempotency_keys (key, request_hash, status, response)
                           SELECT idempotency_key, request_hash, $2, $3 FROM orders
                           WHERE id = $1 ON CONFLICT (key) DO NOTHING""",
                        uuid.UUID(order_id),
                        *answer,
                    )
                    return dataclasses.replace(
                        order, payment_intent_id=intent_id, client_secret=client_secret
                    )
                found = await _fetch(connection, order_id)  # another request's intent won
                assert found is not None
                return found

        return await self._database.run(operation)

    async def fetch(self, order_id: str) -> Order | None:
        async def operation(connection: Connection) -> Order | None:
            return await _fetch(connection, order_id)

        return await self._database.run(operation, readonly=True)

    async def of_account(self, account_id: str, limit: int) -> list[Order]:
        async def operation(connection: Connection) -> list[Order]:
            rows = await connection.fetch(
                _SELECT_ORDER + " WHERE account_id = $1 ORDER BY created_at DESC, id LIMIT $2",
                uuid.UUID(account_id),
                limit,
            )
            lines = await connection.fetch(
                """SELECT order_id::text, product_id, quantity, unit_price_pence
                   FROM order_lines WHERE order_id = ANY($1::uuid[]) ORDER BY line_no""",
                [row[0] for row in rows],
            )
            by_order: dict[str, list[OrderLine]] = {}
            for line in lines:
                by_order.setdefault(line[0], []).append(OrderLine(*line[1:]))
            return [_order(row, by_order.get(row[0], [])) for row in rows]

        return await self._database.run(operation, readonly=True)

    async def pending_payments(self, older_than_s: float) -> list[tuple[str, str]]:
        async def operation(connection: Connection) -> list[tuple[str, str]]:
            rows = await connection.fetch(
                """SELECT id::text, payment_intent_id FROM orders
                   WHERE status = 'PENDING_PAYMENT' AND payment_intent_id IS NOT NULL
                     AND created_at < now() - make_interval(secs => $1)
                   ORDER BY created_at""",
                older_than_s,
            )
            return [(row[0], row[1]) for row in rows]

        return await self._database.run(operation, readonly=True)

    async def apply_payment_event(
        self,
        event_id: str,
        event_type: str,
        intent_id: str | None,
        move: tuple[str, Sequence[str]] | None,
        notice: Callable[[str], OutboxJob],
    ) -> EventOutcome:
        async def operation(connection: Connection) -> EventOutcome:
            async with connection.transaction():
                fresh = await connection.fetchval(
                    """INSERT INTO stripe_events (id, type, payment_intent_id)
                       VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING true""",
                    event_id,
                    event_type,
                    intent_id,
                )
                if not fresh:
                    return EventOutcome(duplicate=True)
                if intent_id is None:
                    return EventOutcome(duplicate=False)
                if move is not None:
                    to, sources = move
                    moved = await connection.fetchval(
                        """UPDATE orders SET status = $2, updated_at = now()
                           WHERE payment_intent_id = $1 AND status = ANY($3::text[])
                           RETURNING id::text""",
                        intent_id,
                        to,
                        list(sources),
                    )
                    if moved is not None:
                        await add_many_to_outbox(connection, [notice(moved)])
                        return EventOutcome(duplicate=False, order_id=moved, status=to, moved=True)
                row = await connection.fetchrow(
                    "SELECT id::text, status FROM orders WHERE payment_intent_id = $1", intent_id
                )
                if row is None:
                    return EventOutcome(duplicate=False)
                return EventOutcome(duplicate=False, order_id=row[0], status=row[1])

        return await self._database.run(operation)


async def _place(connection: Connection, order: NewOrder, price: Pricing) -> Placed:
    answered = await connection.fetchrow(
        "SELECT request_hash, status, response FROM idempotency_keys WHERE key = $1",
        order.idempotency_key,
    )
    existing = await connection.fetchrow(
        "SELECT id::text, request_hash FROM orders WHERE idempotency_key = $1",
        order.idempotency_key,
    )
    if existing is not None:
        found = await _fetch(connection, existing[0])
        assert found is not None
        answer = None if answered is None else (answered[1], answered[2])
        return Placed(found, bytes(existing[1]), answer)
    ids = [product_id for product_id, _ in order.items]
    prices = dict(
        await connection.fetch(
            "SELECT id, price_pence FROM products WHERE active AND id = ANY($1::text[])", ids
        )
    )
    for n, product_id in enumerate(ids):
        if product_id not in prices:
            raise InvalidRequest(
                f"items[{n}].product_id: no such product on sale",
                code="unknown_product",
                field=f"items[{n}].product_id",
            )
    priced = price([OrderLine(p, q, prices[p]) for p, q in order.items])
    inserted = await connection.fetchval(
        """INSERT INTO orders (id, reference, status, subtotal_pence, vat_pence, total_pence,
               customer_name, customer_email, customer_phone, customer_postcode,
               idempotency_key, request_hash, account_id)
           VALUES ($1, $2, 'PENDING_PAYMENT', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (idempotency_key) DO NOTHING RETURNING id""",
        uuid.UUID(order.id),
        order.reference,
        priced.subtotal_pence,
        priced.vat_pence,
        priced.total_pence,
        order.name,
        order.email,
        order.phone,
        order.postcode,
        order.idempotency_key,
        order.request_hash,
        None if order.account_id is None else uuid.UUID(order.account_id),
    )
    if inserted is None:  # a concurrent duplicate placed it first (it has committed)
        return await _place(connection, order, price)
    await connection.executemany(
        """INSERT INTO order_lines (order_id, line_no, product_id, quantity, unit_price_pence)
           VALUES ($1, $2, $3, $4, $5)""",
        [
            (inserted, n, line.product_id, line.quantity, line.unit_price_pence)
            for n, line in enumerate(priced.lines, start=1)
        ],
    )
    placed = Order(
        id=order.id,
        reference=order.reference,
        status="PENDING_PAYMENT",
        subtotal_pence=priced.subtotal_pence,
        vat_pence=priced.vat_pence,
        total_pence=priced.total_pence,
        currency="GBP",
        lines=priced.lines,
        payment_intent_id=None,
        client_secret=None,
        account_id=order.account_id,
    )
    return Placed(placed, order.request_hash, None)


_SELECT_ORDER = """SELECT id::text, reference, status, subtotal_pence, vat_pence, total_pence,
    currency, payment_intent_id, client_secret, account_id::text FROM orders"""


async def _fetch(connection: Connection, order_id: str) -> Order | None:
    row = await connection.fetchrow(_SELECT_ORDER + " WHERE id = $1", uuid.UUID(order_id))
    if row is None:
        return None
    lines = await connection.fetch(
        """SELECT product_id, quantity, unit_price_pence FROM order_lines
           WHERE order_id = $1 ORDER BY line_no""",
        uuid.UUID(order_id),
    )
    return _order(row, [OrderLine(*line) for line in lines])


def _order(row: Any, lines: Sequence[OrderLine]) -> Order:
    return Order(
        id=row[0],
        reference=row[1],
        status=row[2],
        subtotal_pence=row[3],
        vat_pence=row[4],
        total_pence=row[5],
        currency=row[6],
        lines=tuple(lines),
        payment_intent_id=row[7],
        client_secret=row[8],
        account_id=row[9],
    )
