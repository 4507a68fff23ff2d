"""Domain actors: one per domain (catalogue, slot booker, payment, notifier, ...),
and the handlers of their jobs (the job machinery itself is in ``jobs/``)."""

from actors._access_tokens import NO_SESSION, AccessTokens, Identity, looks_like_jwt
from actors._accounts import (
    AccountActor,
    Login,
    Logout,
    Refresh,
    Register,
    SessionKeeper,
    Tokens,
    refresh_account,
)
from actors._availability import Availability, FindSlots
from actors._availability_memory import AvailabilityMemory
from actors._booker import SlotBooker
from actors._booking_messages import (
    BOOKINGS_QUEUE,
    REPLAY_KIND,
    AccountAppointments,
    Book,
    BookingRequest,
    BookReply,
    Cancel,
    Customer,
    Lookup,
    Reschedule,
)
from actors._booking_views import appointment_view
from actors._calendar import LONDON, AppointmentType, Category, Roster, Slot, local_iso
from actors._catalogue import (
    Catalogue,
    CatalogueMessage,
    CatalogueReply,
    ListShowrooms,
    catalogue_spec,
)
from actors._notices import KINDS as NOTIFICATION_KINDS
from actors._notices import Rendered, gsm_length, render_appointment, render_order
from actors._notifier import RETRY_FAILED_KIND, Notifier, Providers, notification_kinds
from actors._orders import (
    AccountOrders,
    GetOrder,
    OrderActor,
    OrderMessage,
    OrderReply,
    PaymentEvent,
    PlaceOrder,
)
from actors._passwords import Passwords, check_bounded, check_password, email_key
from actors._payments import (
    CreateIntent,
    PaymentActor,
    PaymentMessage,
    RetrieveIntent,
    pay,
    payment_spec,
)
from actors._products import GetProduct, ListProducts, ProductCatalogue
from actors._reader import BookingReader
from actors._reconciler import RECONCILE_KIND, Reconciler
from actors._replayer import BookingReplayer
from actors._roster import RosterSource
from actors._senders import Deliver, Sender, SenderActor, provider_retry, sender_spec
from actors._tokens import token_key

__all__ = [
    "BOOKINGS_QUEUE",
    "LONDON",
    "NOTIFICATION_KINDS",
    "NO_SESSION",
    "RECONCILE_KIND",
    "REPLAY_KIND",
    "RETRY_FAILED_KIND",
    "AccessTokens",
    "AccountActor",
    "AccountAppointments",
    "AccountOrders",
    "AppointmentType",
    "Availability",
    "AvailabilityMemory",
    "Book",
    "BookReply",
    "BookingReader",
    "BookingReplayer",
    "BookingRequest",
    "Cancel",
    "Catalogue",
    "CatalogueMessage",
    "CatalogueReply",
    "Category",
    "CreateIntent",
    "Customer",
    "Deliver",
    "FindSlots",
    "GetOrder",
    "GetProduct",
    "Identity",
    "ListProducts",
    "ListShowrooms",
    "Login",
    "Logout",
    "Lookup",
    "Notifier",
    "OrderActor",
    "OrderMessage",
    "OrderReply",
    "Passwords",
    "PaymentActor",
    "PaymentEvent",
    "PaymentMessage",
    "PlaceOrder",
    "ProductCatalogue",
    "Providers",
    "Reconciler",
    "Refresh",
    "Register",
    "Rendered",
    "Reschedule",
    "RetrieveIntent",
    "Roster",
    "RosterSource",
    "Sender",
    "SenderActor",
    "SessionKeeper",
    "Slot",
    "SlotBooker",
    "Tokens",
    "appointment_view",
    "catalogue_spec",
    "check_bounded",
    "check_password",
    "email_key",
    "gsm_length",
    "local_iso",
    "looks_like_jwt",
    "notification_kinds",
    "pay",
    "payment_spec",
    "provider_retry",
    "refresh_account",
    "render_appointment",
    "render_order",
    "sender_spec",
    "token_key",
]
