"""Error messages a person can read: no regex, no escapes, no framework wording."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway._appointments import AppointmentIn
from gateway._json import decode_json
from supervisors import InvalidRequest
from tests._booking import local, next_weekday

BASE: dict[str, Any] = {
    "type": "SHOWROOM",
    "category": "KITCHEN",
    "start": local(next_weekday(0), 10),
    "showroom_id": "leeds",
    "customer": {
        "name": "Ada",
        "email": "ada@example.com",
        "phone": "+44 7700 900123",
        "postcode": "LS1 6HD",
    },
}


def _customer(**changes: Any) -> dict[str, Any]:
    return {**BASE, "customer": {**BASE["customer"], **changes}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_customer(email="nope"), "customer.email: not a valid e-mail address"),
        (_customer(phone="x"), "customer.phone: not a valid phone number"),
        (_customer(postcode="zz"), "customer.postcode: not a valid UK postcode"),
        (_customer(name=""), "customer.name: must not be empty"),
        (_customer(name="a" * 201), "customer.name: must have at most 200 characters"),
        ({**BASE, "notes": "\x01"}, "notes: contains characters that are not allowed here"),
        ({**BASE, "type": "X"}, "type: not one of the accepted values"),
        ({**BASE, "start": "soon"}, "start: expected a date and time with its offset"),
        ({**BASE, "showroom_id": 5}, "showroom_id: expected a string, got an integer"),
        ({**BASE, "colour": "red"}, "colour: unknown field"),
    ],
)
def test_validation_messages_are_plain_words(body: dict[str, Any], message: str) -> None:
    """Each invalid field gets a plain message naming it (msgspec showed the regex)."""
    with pytest.raises(InvalidRequest) as caught:
        decode_json(json.dumps(body).encode(), AppointmentIn)
    assert caught.value.message.startswith(message)
    assert "\\" not in caught.value.message
    assert "regex" not in caught.value.message
    assert caught.value.code == "invalid_field"
