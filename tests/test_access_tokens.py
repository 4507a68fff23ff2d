"""Access tokens: every classic JWT attack is one 401 ``invalid_token``; keys rotate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from actors import AccessTokens, Identity
from actors._access_tokens import VERIFIED_CAPACITY
from config import AuthSettings, ConfigError, Settings
from supervisors import Unauthorized


def seed() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


NEW, OLD = seed(), seed()
ROTATING = AuthSettings(signing_keys=f"new:{NEW},old:{OLD}")
CURRENT = AuthSettings(signing_keys=f"new:{NEW}")
PREVIOUS = AuthSettings(signing_keys=f"old:{OLD}")


def issue(settings: AuthSettings = CURRENT, *, at: float | None = None) -> str:
    clock: Callable[[], float] = time.time if at is None else (lambda: at)
    return AccessTokens(settings, clock=clock).issue("acct-1", "sid-1", "a@b.example", "A", None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return unb64(header), unb64(payload), signature


def forged(header: dict[str, Any], payload: dict[str, Any], signature: str) -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), signature]
    )


def refused(token: str, settings: AuthSettings = CURRENT) -> str:
    with pytest.raises(Unauthorized) as caught:
        AccessTokens(settings).verify(token)
    return str(getattr(caught.value, "code", ""))


def test_a_fresh_token_verifies_and_carries_the_identity() -> None:
    identity = AccessTokens(CURRENT).verify(issue())
    assert isinstance(identity, Identity)
    assert (identity.account_id, identity.session_id, identity.email) == (
        "acct-1",
        "sid-1",
        "a@b.example",
    )
    header, payload, _ = parts(issue())
    assert (header["alg"], header["kid"]) == ("EdDSA", "new")
    assert payload["exp"] - payload["iat"] == 900


def test_alg_none_is_refused() -> None:
    header, payload, _ = parts(issue())
    assert refused(forged({**header, "alg": "none"}, payload, "")) == "invalid_token"
    assert refused(forged({"alg": "none", "typ": "JWT"}, payload, "")) == "invalid_token"


def test_hmac_keyed_with_our_public_key_is_refused() -> None:
    """The HS/RS confusion: an HS256 token whose secret is the verifier's public key."""
    private = Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(NEW + "=="))
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    _, payload, _ = parts(issue())
    for secret in (public, pem):
        # pyjwt itself refuses a PEM as an HMAC secret, so build the token by hand.
        header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "new"}).encode())
        body = b64(json.dumps(payload).encode())
        mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        assert refused(f"{header}.{body}.{b64(mac)}") == "invalid_token"


def test_a_wrong_or_missing_kid_is_refused() -> None:
    header, payload, signature = parts(issue())
    assert refused(forged({**header, "kid": "nope"}, payload, signature)) == "invalid_token"
    no_kid = {k: v for k, v in header.items() if k != "kid"}
    assert refused(forged(no_kid, payload, signature)) == "invalid_token"
    assert refused(forged({**header, "kid": ["new"]}, payload, signature)) == "invalid_token"


def test_a_tampered_payload_or_signature_is_refused() -> None:
    header, payload, signature = parts(issue())
    assert refused(forged(header, {**payload, "sub": "acct-2"}, signature)) == "invalid_token"
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert refused(forged(header, payload, flipped)) == "invalid_token"


def test_a_token_signed_by_a_stranger_is_refused() -> None:
    stranger = AuthSettings(signing_keys=f"new:{seed()}")  # same kid, another key
    assert refused(issue(stranger)) == "invalid_token"


def test_expired_and_not_yet_valid_tokens_are_refused() -> None:
    assert refused(issue(at=time.time() - 901)) == "invalid_token"
    assert refused(issue(at=time.time() + 120)) == "invalid_token"  # nbf and iat ahead


def test_a_token_claiming_a_longer_life_is_refused() -> None:
    """Signed with our key (say a leaked old build), but exp - iat above 15 min."""
    private = Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(NEW + "=="))
    _, payload, _ = parts(issue())
    long = {**payload, "exp": payload["iat"] + 86_400}
    token = jwt.encode(long, private, algorithm="EdDSA", headers={"kid": "new"})
    assert refused(token) == "invalid_token"


def test_another_audience_or_issuer_is_refused() -> None:
    other = AuthSettings(signing_keys=f"new:{NEW}", audience="someone-else")
    assert refused(issue(other)) == "invalid_token"
    other = AuthSettings(signing_keys=f"new:{NEW}", issuer="someone-else")
    assert refused(issue(other)) == "invalid_token"


@pytest.mark.parametrize(
    "garbage", ["", "x", "a.b", "a.b.c", "...", "e30.e30.", "\u00e9.\u00e9.\u00e9", "A" * 5000]
)
def test_garbage_is_refused_as_invalid_token(garbage: str) -> None:
    assert refused(garbage) == "invalid_token"


def test_key_rotation_previous_key_verifies_a_removed_one_does_not() -> None:
    """During a rotation the keys are ``new,old``: tokens signed with ``old`` (before
    the rotation) still verify; once ``old`` is removed they do not."""
    before = issue(PREVIOUS)
    assert AccessTokens(ROTATING).verify(before).account_id == "acct-1"
    assert parts(issue(ROTATING))[0]["kid"] == "new"  # the first key signs
    assert refused(before, CURRENT) == "invalid_token"


def test_signing_keys_are_checked_at_startup() -> None:
    for bad in ("nokey", "k:not-base64!", f"k:{b64(b'short')}", f"k:{NEW},k:{OLD}", "bad kid:x"):
        with pytest.raises(ConfigError, match="LOMASH_AUTH_SIGNING_KEYS"):
            Settings.from_env({"LOMASH_AUTH_SIGNING_KEYS": bad})


def test_a_verified_token_is_remembered_until_it_expires_and_forgeries_never() -> None:
    """The same token again is answered from memory, but not past its expiry (a
    token with one second left is refused once that second is over); a forged or
    tampered token is refused each time and never kept; at most VERIFIED_CAPACITY
    tokens are kept."""
    tokens = AccessTokens(CURRENT)
    almost = issue(at=time.time() - 899)  # expires in about one second
    assert tokens.verify(almost).account_id == "acct-1"
    assert tokens.verify(almost).account_id == "acct-1"  # remembered
    assert tokens.remembered == 1
    time.sleep(max(0.0, parts(almost)[1]["exp"] - time.time()) + 0.05)
    with pytest.raises(Unauthorized):
        tokens.verify(almost)
    assert tokens.remembered == 0
    header, payload, signature = parts(issue())
    tampered = forged(header, {**payload, "sub": "acct-2"}, signature)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            tokens.verify(tampered)
    assert tokens.remembered == 0
    for n in range(VERIFIED_CAPACITY + 5):
        tokens.verify(AccessTokens(CURRENT).issue(f"acct-{n}", "sid-1", "a@b.example", "A", None))
    assert tokens.remembered == VERIFIED_CAPACITY
