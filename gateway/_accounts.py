"""Accounts over HTTP.

- ``POST /v1/auth/register`` ``{"email", "password", "name", "phone"?}`` -> 201 the
  account; 409 ``email_taken``; 422 for the password policy (``password_too_short``,
  ``password_too_long``, ``password_is_email``, ``password_too_common``).
- ``POST /v1/auth/login`` ``{"email", "password"}`` -> 200 ``{"access_token",
  "token_type": "Bearer", "expires_in", "refresh_token"}``; 401
  ``invalid_credentials`` for an unknown address and a wrong password alike.
- ``POST /v1/auth/refresh`` ``{"refresh_token"}`` -> 200 new tokens (the old refresh
  token is used up); 401 ``invalid_token``.
- ``POST /v1/auth/logout`` (access token) -> 204: the session ends, its tokens stop
  working.
- ``GET /v1/me`` (access token) -> the account, from the token alone.
- ``GET /v1/me/appointments``, ``GET /v1/me/orders`` -> the account's, newest first.

Login, register and refresh are rate limited per client address and per account
(gateway/_auth.py); every answer carries ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from actors import (
    AccountAppointments,
    AccountOrders,
    Identity,
    Login,
    Logout,
    OrderReply,
    Refresh,
    Register,
    Tokens,
    appointment_view,
    check_bounded,
    check_password,
    email_key,
    refresh_account,
)
from adapters import Account, Appointment
from gateway._appointments import Email, Name, Phone, request_client
from gateway._auth import AccountGuard
from gateway._json import NO_STORE, json_response, read_json
from supervisors import ActorRef

__all__ = ["register_account_routes"]

# Far above any policy's maximum: the body is bounded before the policy says more.
_Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
_RefreshToken = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class RegisterIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: _Password
    name: Name
    phone: Phone | None = None


class LoginIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: _Password


class RefreshIn(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: _RefreshToken


def _account_view(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "email": account.email,
        "name": account.name,
        "phone": account.phone,
        "created_at": account.created_at.isoformat(),
    }


def me_view(identity: Identity) -> dict[str, Any]:
    """``GET /v1/me``'s answer (also served by the fast route)."""
    return {
        "id": identity.account_id,
        "email": identity.email,
        "name": identity.name,
        "phone": identity.phone,
    }


def _with(headers: dict[str, str]) -> dict[str, str]:
    return {**NO_STORE, **headers}


def register_account_routes(
    app: QuartTrio,
    guard: AccountGuard,
    accounts: ActorRef[Any, Any],
    sessions: ActorRef[Any, Any],
    reader: ActorRef[Any, Any] | None,
    orders: ActorRef[Any, Any] | None,
) -> None:
    settings = guard.settings

    @app.post("/v1/auth/register")
    async def register() -> Response:
        limits = await guard.limit("register", request_client(guard))
        body = await read_json(RegisterIn)
        email_key(body.email)  # a domain IDNA cannot encode is a 422 before any hashing
        check_password(body.password, body.email, settings)
        phone = None if body.phone is None else body.phone.strip()
        account = cast(
            Account,
            await accounts.ask(Register(body.email, body.name.strip(), phone, body.password)),
        )
        return json_response(_account_view(account), 201, _with(limits))

    @app.post("/v1/auth/login")
    async def login() -> Response:
        body = await read_json(LoginIn)
        limits = await guard.limit("login", request_client(guard), email_key(body.email))
        check_bounded(body.password, settings)
        tokens = cast(Tokens, await accounts.ask(Login(body.email, body.password)))
        return json_response(tokens.view(), 200, _with(limits))

    @app.post("/v1/auth/refresh")
    async def refresh() -> Response:
        body = await read_json(RefreshIn)
        limits = await guard.limit(
            "refresh", request_client(guard), refresh_account(body.refresh_token)
        )
        tokens = cast(Tokens, await sessions.ask(Refresh(body.refresh_token)))
        return json_response(tokens.view(), 200, _with(limits))

    @app.post("/v1/auth/logout")
    async def logout() -> Response:
        identity = await guard.required(request.headers.get("Authorization"))
        await sessions.ask(Logout(identity.session_id))
        return Response(b"", status=204, headers=NO_STORE)

    @app.get("/v1/me")
    async def me() -> Response:
        identity = await guard.required(request.headers.get("Authorization"))
        return json_response(me_view(identity), headers=NO_STORE)

    @app.get("/v1/me/appointments")
    async def my_appointments() -> Response:
        identity = await guard.required(request.headers.get("Authorization"))
        found: list[Appointment] = []
        if reader is not None:
            found = await reader.ask(AccountAppointments(identity.account_id))
        views = [appointment_view(a) for a in found]
        return json_response({"appointments": views}, headers=NO_STORE)

    @app.get("/v1/me/orders")
    async def my_orders() -> Response:
        identity = await guard.required(request.headers.get("Authorization"))
        if orders is None:  # no payments configured: nobody has ever ordered
            return json_response({"orders": []}, headers=NO_STORE)
        reply = cast(OrderReply, await orders.ask(AccountOrders(identity.account_id)))
        return Response(
            reply.body, status=reply.status, content_type="application/json", headers=NO_STORE
        )
