"""The API's OpenAPI 3.1 document, built from the types that decode the requests
(``AppointmentIn``, ``OrderIn``, ...) and describe the answers (gateway/_schemas.py)
through msgspec's JSON Schema, and the human docs page.

- ``GET /openapi.json``: the document: every route, its parameters, bodies, answers
  (the one error shape on every 4xx/5xx), the headers (``Idempotency-Key``,
  ``Retry-After``, ``RateLimit-*``), the security schemes (manage token, access token).
- ``GET /docs``: Swagger UI, its files served by the service itself (the
  ``swagger-ui-py`` wheel ships them; no CDN).

``OPERATIONS`` is the table; tests/test_openapi.py checks that it covers every route
the app serves, and runs schemathesis against the running service with it.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from typing import Any

import msgspec
from quart import Response
from quart_trio import QuartTrio

from gateway._accounts import LoginIn, RefreshIn, RegisterIn
from gateway._appointments import AppointmentIn, CancelIn, RescheduleIn
from gateway._orders import OrderIn
from gateway._schemas import (
    AccountOut,
    AppointmentOut,
    AppointmentsOut,
    AvailabilityOut,
    BookingOut,
    ErrorOut,
    HealthOut,
    MeOut,
    OrderOut,
    OrdersOut,
    PlacedOrderOut,
    ProductOut,
    ProductsOut,
    ReceivedOut,
    ShowroomsOut,
    StatusOut,
    StripeEvent,
    TokensOut,
)
from supervisors import NotFound

__all__ = ["OPERATIONS", "Operation", "openapi_document", "register_docs_routes"]

MANAGE = "manageToken"
ACCESS = "accessToken"
METRICS = "metricsToken"
ADMIN = "adminToken"


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # OpenAPI form: /v1/appointments/{raw_id}
    summary: str
    tag: str
    responses: dict[int, type | None]  # status -> its body's type (None: no body)
    body: type | None = None
    query: tuple[tuple[str, bool, dict[str, Any]], ...] = ()  # (name, required, schema)
    security: tuple[str, ...] = ()  # alternatives; empty: anonymous
    idempotency_key: bool = False
    header: tuple[str, bool, dict[str, Any]] | None = None  # (name, required, schema)
    rate_limited: bool = False
    content_type: str = "application/json"
    extra_statuses: tuple[int, ...] = field(default=())


_ID = {"type": "string", "maxLength": 64}
_DATE = {"type": "string", "format": "date"}
OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/health", "Health of the service and its dependencies", "health",
              {200: HealthOut, 503: HealthOut}),
    Operation("GET", "/health/live", "The process answers (container health check)", "health",
              {200: StatusOut}),
    Operation("GET", "/health/ready", "Ready for traffic (load balancer)", "health",
              {200: StatusOut, 503: StatusOut}),
    Operation("GET", "/v1/showrooms", "The showrooms", "catalogue", {200: ShowroomsOut}),
    Operation("GET", "/v1/products", "The ranges on sale", "catalogue", {200: ProductsOut},
              query=(("category", False, {"type": "string"}),)),
    Operation("GET", "/v1/products/{raw_id}", "One range, with its description", "catalogue",
              {200: ProductOut}),
    Operation("GET", "/v1/appointments/availability", "Free slots", "appointments",
              {200: AvailabilityOut},
              query=(("type", True, {"type": "string"}), ("showroom_id", False, _ID),
                     ("from", False, _DATE), ("to", False, _DATE),
                     ("category", False, {"type": "string"}))),
    Operation("POST", "/v1/appointments", "Book an appointment", "appointments",
              {201: BookingOut, 202: BookingOut}, body=AppointmentIn,
              security=("", ACCESS), idempotency_key=True, rate_limited=True,
              extra_statuses=(409,)),
    Operation("GET", "/v1/appointments/{raw_id}", "A booking", "appointments",
              {200: AppointmentOut}, security=(MANAGE, ACCESS)),
    Operation("POST", "/v1/appointments/{raw_id}/cancel", "Cancel a booking", "appointments",
              {200: AppointmentOut}, body=CancelIn, security=(MANAGE, ACCESS),
              extra_statuses=(409,)),
    Operation("POST", "/v1/appointments/{raw_id}/reschedule", "Move a booking",
              "appointments", {200: AppointmentOut}, body=RescheduleIn,
              security=(MANAGE, ACCESS), extra_statuses=(409,)),
    Operation("POST", "/v1/orders", "Place an order (pay with the PaymentIntent)", "orders",
              {201: PlacedOrderOut}, body=OrderIn, security=("", ACCESS),
              idempotency_key=True, rate_limited=True),
    Operation("GET", "/v1/orders/{raw_id}", "An order", "orders", {200: OrderOut},
              security=(MANAGE, ACCESS)),
    Operation("POST", "/v1/auth/register", "Create an account", "accounts",
              {201: AccountOut}, body=RegisterIn, rate_limited=True, extra_statuses=(409,)),
    Operation("POST", "/v1/auth/login", "Log in: an access and a refresh token", "accounts",
              {200: TokensOut}, body=LoginIn, rate_limited=True),
    Operation("POST", "/v1/auth/refresh", "New tokens for a refresh token", "accounts",
              {200: TokensOut}, body=RefreshIn, rate_limited=True),
    Operation("POST", "/v1/auth/logout", "End the session", "accounts", {204: None},
              security=(ACCESS,)),
    Operation("GET", "/v1/me", "The logged-in account", "accounts", {200: MeOut},
              security=(ACCESS,)),
    Operation("GET", "/v1/me/appointments", "The account's bookings", "accounts",
              {200: AppointmentsOut}, security=(ACCESS,)),
    Operation("GET", "/v1/me/orders", "The account's orders", "accounts", {200: OrdersOut},
              security=(ACCESS,)),
    Operation("POST", "/v1/webhooks/stripe", "Stripe's payment events (signed)", "orders",
              {200: ReceivedOut}, body=StripeEvent,
              header=("Stripe-Signature", True, {"type": "string"})),
)  # fmt: skip

_RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")


def _error(description: str, *headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    }
    if headers:
        answer["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    return answer


_ERROR_TEXT = {
    400: "Malformed request (not JSON, a bad Idempotency-Key)",
    401: "No credentials, or wrong ones",
    404: "No such resource (also another customer's, or a wrong manage token)",
    405: "The path exists, the method does not",
    408: "The body did not arrive in time",
    409: "Conflicts with what exists (slot_taken, email_taken, ...)",
    413: "The body is too large",
    415: "Not JSON",
    422: "A field is wrong; ``field`` names it",
    500: "A bug (no detail leaks)",
    502: "A provider failed",
}


def openapi_document(*, version: str) -> dict[str, Any]:
    types: set[type] = {ErrorOut}
    for op in OPERATIONS:
        types.update(t for t in op.responses.values() if t is not None)
        if op.body is not None:
            types.add(op.body)
    ordered = sorted(types, key=lambda t: t.__name__)
    _, components = msgspec.json.schema_components(
        ordered, ref_template="#/components/schemas/{name}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    header_schema = {"schema": {"type": "integer", "minimum": 0}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Lomash Wood API",
            "version": version,
            "description": (
                "Appointments, orders and accounts. Every error has one shape: "
                '{"error": {"code", "message", "field"?, "request_id"}}; a 503 carries '
                "Retry-After; POSTs that create something need an Idempotency-Key."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "headers": {
                "Retry-After": {"description": "Seconds to wait before retrying", **header_schema},
                "RateLimit-Limit": {"description": "Requests allowed at once", **header_schema},
                "RateLimit-Remaining": {"description": "Requests left now", **header_schema},
                "RateLimit-Reset": {
                    "description": "Seconds until the limit is full again", **header_schema
                },
                "RateLimit-Policy": {
                    "description": "count;w=window seconds", "schema": {"type": "string"}
                },
            },
            "securitySchemes": {
                MANAGE: {"type": "apiKey", "in": "header", "name": "X-Manage-Token",
                         "description": "The manage token given with a booking or an order"},
                ACCESS: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                         "description": "An access token from /v1/auth/login"},
            },
        },
    }  # fmt: skip


def _operation(op: Operation) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "query", "required": required, "schema": schema}
        for name, required, schema in op.query
    ]
    for part in op.path.split("/"):
        if part.startswith("{"):
            parameters.append(
                {"name": part[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            )
    if op.header is not None:
        name, required, schema = op.header
        parameters.append({"name": name, "in": "header", "required": required, "schema": schema})
    if op.idempotency_key:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "description": "A unique value per request; send it again to retry safely",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    responses: dict[str, Any] = {}
    rate = _RATE_HEADERS if op.rate_limited else ()
    for status, kind in op.responses.items():
        answer: dict[str, Any] = {"description": "OK" if status < 300 else "See the body"}
        if kind is not None:
            ref = {"$ref": f"#/components/schemas/{kind.__name__}"}
            answer["content"] = {op.content_type: {"schema": ref}}
        if status == 503:
            answer["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
        elif rate and status < 300:
            answer["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in rate}
        responses[str(status)] = answer
    statuses = {400, 404, 405, 408, 413, 415, 422, 500, 502, 503, *op.extra_statuses}
    if op.security:
        statuses.add(401)
    if op.rate_limited:
        statuses.add(401)
        responses["429"] = _error("Too many requests: wait Retry-After", "Retry-After", *rate)
    for status in sorted(statuses):
        if str(status) not in responses:
            responses[str(status)] = (
                _error("Unavailable now: retry after Retry-After", "Retry-After")
                if status == 503
                else _error(_ERROR_TEXT[status])
            )
    operation: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": f"{op.method.lower()}_{op.path.strip('/').replace('/', '_')}".replace(
            "{", ""
        ).replace("}", ""),
        "parameters": parameters,
        "responses": responses,
    }
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body is not CancelIn,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}
            },
        }
    if op.security:
        operation["security"] = [{} if s == "" else {s: []} for s in op.security]
    return operation


_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lomash Wood API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
_INIT = 'SwaggerUIBundle({url: "/openapi.json", dom_id: "#docs"});\n'
_ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}


def register_docs_routes(app: QuartTrio, *, version: str) -> None:
    document = msgspec.json.encode(openapi_document(version=version))
    static = importlib.resources.files("swagger_ui") / "static"
    assets = {name: (static / name).read_bytes() for name in _ASSETS}
    cacheable = {"Cache-Control": "public, max-age=3600"}

    @app.get("/openapi.json")
    async def openapi() -> Response:
        return Response(document, content_type="application/json", headers=cacheable)

    @app.get("/docs")
    async def docs() -> Response:
        return Response(_DOCS_PAGE, content_type="text/html; charset=utf-8", headers=cacheable)

    @app.get("/docs/<asset>")
    async def docs_asset(asset: str) -> Response:
        if asset == "init.js":
            return Response(_INIT, content_type="text/javascript", headers=cacheable)
        if asset not in assets:
            raise NotFound("no such file")
        return Response(assets[asset], content_type=_ASSETS[asset], headers=cacheable)
