"""What a customer reads: a notification's email (plain text and HTML) and SMS,
rendered from ``actors/templates/`` with Jinja2 (HTML autoescaped, so a name like
``<script>`` is text; undefined variables are errors, not blanks).

One template per kind and channel: ``{kind}.email.txt`` (which also sets ``subject``),
``{kind}.email.html``, ``{kind}.sms.txt``. Times are in London time with the day;
the SMS is kept under 160 GSM-7 characters where the facts allow it (one segment).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2

from actors._calendar import LONDON
from actors._tokens import manage_token
from adapters import AppointmentFacts, Email, OrderFacts
from config import NotificationSettings

__all__ = [
    "APPOINTMENT_KINDS",
    "KINDS",
    "ORDER_KINDS",
    "Rendered",
    "gsm_length",
    "render_appointment",
    "render_order",
    "sms_number",
]

APPOINTMENT_KINDS = frozenset(
    {"appointment.confirmed", "appointment.cancelled", "appointment.rescheduled"}
)
ORDER_KINDS = frozenset({"order.paid", "order.payment_failed", "order.refunded"})
KINDS = APPOINTMENT_KINDS | ORDER_KINDS

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("actors", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

_WHAT = {
    "SHOWROOM": ("showroom appointment", "showroom visit"),
    "HOME_MEASUREMENT": ("home measurement visit", "home visit"),
    "ONLINE": ("online design consultation", "online consultation"),
}

# GSM 03.38: the basic set (one unit each) and the extension set (two units each).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€")


def sms_number(phone: str) -> str | None:
    """The number in E.164 for an SMS provider: spaces, dashes and brackets dropped,
    ``00`` read as ``+``, a leading ``0`` as a UK number (``07700 900123`` ->
    ``+447700900123``); None if what is left is not 8 to 15 digits after a ``+``."""
    compact = "".join(ch for ch in phone if ch not in " -().\t")
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    elif compact.startswith("0"):
        compact = "+44" + compact[1:]
    digits = compact[1:]
    if not (compact.startswith("+") and digits.isdigit() and 8 <= len(digits) <= 15):
        return None
    return compact


def gsm_length(text: str) -> int | None:
    """Length in GSM-7 units, or None if the text needs UCS-2 (70 per segment)."""
    units = 0
    for ch in text:
        if ch in _GSM_BASIC:
            units += 1
        elif ch in _GSM_EXTENDED:
            units += 2
        else:
            return None
    return units


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str
    sms: str

    def email(self, to: str) -> Email:
        return Email(to=to, subject=self.subject, text=self.text, html=self.html)


def _render(kind: str, context: dict[str, Any]) -> Rendered:
    text_template = _ENVIRONMENT.get_template(f"{kind}.email.txt")
    module = text_template.make_module(context)
    subject = str(getattr(module, "subject", "")).strip()
    text = str(module).strip() + "\n"
    html = _ENVIRONMENT.get_template(f"{kind}.email.html").render(context, subject=subject)
    sms = _ENVIRONMENT.get_template(f"{kind}.sms.txt").render(context).strip()
    return Rendered(subject=subject, text=text, html=html, sms=" ".join(sms.split()))


def _long_when(start: datetime, end: datetime) -> str:
    local, until = start.astimezone(LONDON), end.astimezone(LONDON)
    return f"{local:%A} {local.day} {local:%B %Y}, {local:%H:%M} to {until:%H:%M} (London time)"


def _short_when(start: datetime) -> str:
    local = start.astimezone(LONDON)
    return f"{local:%a} {local.day} {local:%b} {local:%H:%M}"


def _link(template: str, subject_id: str, key: bytes) -> str:
    return template.format(id=subject_id, token=manage_token(key, subject_id))


def _pounds(pence: int) -> str:
    return f"£{pence // 100:,}.{pence % 100:02d}"


def render_appointment(
    kind: str,
    facts: AppointmentFacts,
    settings: NotificationSettings,
    *,
    token_key: bytes,
    previous_start: datetime | None = None,
) -> Rendered:
    """``kind``'s messages about this appointment (``previous_start``: the time it moved
    from, for a reschedule)."""
    what, short_what = _WHAT.get(facts.kind, ("appointment", "appointment"))
    if facts.kind == "ONLINE":
        where, short_where = "Online: we will email you the video link", "online"
    elif facts.kind == "HOME_MEASUREMENT" or facts.showroom is None:
        where, short_where = "At your home", "at your home"
    else:
        room = facts.showroom
        where = f"{room.name}, {room.address}, {room.city} {room.postcode}"
        short_where = f"at {room.name}"
    before = previous_start or facts.previous_start or facts.start
    manage_url = _link(settings.manage_url, facts.id, token_key)
    booking_url = manage_url.split("/appointments/")[0] + "/appointments"
    return _render(
        kind,
        {
            "name": facts.customer_name,
            "reference": facts.reference,
            "what": what,
            "short_what": short_what,
            "when": _long_when(facts.start, facts.end),
            "short_when": _short_when(facts.start),
            "previous_when": _long_when(before, before + (facts.end - facts.start)),
            "short_previous_when": _short_when(before),
            "where": where,
            "short_where": short_where,
            "manage_url": manage_url,
            "booking_url": booking_url,
            "reason": _reason(facts.status_reason),
        },
    )


def _reason(status_reason: str | None) -> str | None:
    if status_reason is None:
        return None
    if status_reason == "slot_taken_while_pending":
        return "the time you chose was taken while we could not reach our booking system"
    return status_reason.replace("_", " ")


def render_order(
    kind: str, facts: OrderFacts, settings: NotificationSettings, *, token_key: bytes
) -> Rendered:
    lines = [
        {"name": name, "quantity": quantity, "amount": _pounds(quantity * unit)}
        for name, quantity, unit in facts.lines
    ]
    return _render(
        kind,
        {
            "name": facts.customer_name,
            "reference": facts.reference,
            "lines": lines,
            "vat": _pounds(facts.vat_pence),
            "total": _pounds(facts.total_pence),
            "order_url": _link(settings.order_url, facts.id, token_key),
        },
    )
