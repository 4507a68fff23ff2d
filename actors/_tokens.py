"""Manage tokens: derived from the appointment id with a secret, so none is stored;
stored answers hold a marker in their place."""

from __future__ import annotations

import base64
import hashlib
import hmac

import msgspec

from adapters import Appointment
from config import DEVELOPMENT_TOKEN_SECRET

__all__ = [
    "TOKEN_MARKER",
    "check_token",
    "hash_token",
    "manage_token",
    "reveal",
    "token_key",
]


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# What stored answers hold in place of the manage token; ``reveal`` puts it back.
TOKEN_MARKER = "<manage-token>"


_DEVELOPMENT_SECRET = DEVELOPMENT_TOKEN_SECRET.encode()


def token_key(secret: str | None) -> bytes:
    return secret.encode() if secret is not None else _DEVELOPMENT_SECRET


def manage_token(key: bytes, appointment_id: str) -> str:
    """The guest's manage token: derived, so no copy of it needs storing anywhere."""
    digest = hmac.new(key, f"manage-token:{appointment_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


_TOKEN_FIELD = f'"manage_token":"{TOKEN_MARKER}"'


def reveal(body: str, key: bytes) -> str:
    """A stored answer as the client gets it: the marker replaced by the token (in
    the ``manage_token`` field only: a customer's notes may say anything)."""
    if _TOKEN_FIELD not in body:
        return body
    appointment_id = msgspec.json.decode(body)["id"]
    token = manage_token(key, appointment_id)
    return body.replace(_TOKEN_FIELD, f'"manage_token":"{token}"', 1)


def check_token(appointment: Appointment, token: str) -> bool:
    return hmac.compare_digest(appointment.token_hash, hash_token(token))
