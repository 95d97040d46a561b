"""Webhooks to the operator's platform: what an event says and how it is signed. Pure.

An event is composed once, when its cause is stored, and its body is kept in the outbox
as bytes, so every attempt posts the same body with the same delivery id. The delivery id
is derived from the cause (`delivery_id`): the same cause can only ever give the same id,
so a receiver de-duplicates on it, and the outbox keeps one row per id. The signature is
made at each attempt (its timestamp is the attempt's), as Stripe signs its events:

    Ticketd-Signature: t=1764000000,v1=<hex HMAC-SHA256(key, b"1764000000." + body)>

with one `v1=` per signing key (newest first), so that a receiver that knows either the
old or the new key accepts events while the key is being changed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SELF_EXCLUSION = "self_exclusion.requested"
TICKET_CREATED = "ticket.created"
SLA_BREACHED = "sla.breached"
EVENTS = (SELF_EXCLUSION, TICKET_CREATED, SLA_BREACHED)

SIGNATURE_HEADER = "Ticketd-Signature"
EVENT_HEADER = "Ticketd-Event"
DELIVERY_HEADER = "Ticketd-Delivery"
TOLERANCE_SECONDS = 300  # how old a signature a receiver should accept (replays)


@dataclass(frozen=True)
class WebhookEvents:
    """Which events are queued, the URL each row records as its recipient, and the desk
    (its support address) whose delivery ids these are."""

    url: str
    events: frozenset[str] = frozenset(EVENTS)
    desk: str = ""

    def wants(self, event: str) -> bool:
        return event in self.events


@dataclass(frozen=True)
class TicketFacts:
    """What an event tells of its ticket and of the person who wrote it."""

    number: int
    category: str
    priority: str
    contact_id: int | None
    address: str | None  # sent only with self_exclusion.requested
    brand: str = "default"  # the brand whose mailbox the ticket came in at


def delivery_id(desk: str, event: str, ticket_id: int, cause: str) -> str:
    """The delivery id of `event` about a ticket, caused by `cause` (the ingest key of the
    mail, the clock that breached ...): a hash of the four, so that the same cause never
    makes two ids, and two desks posting to one platform never share one."""
    if not cause:
        raise ValueError("a webhook event needs its cause")
    text = "\n".join((desk.lower(), event, str(ticket_id), cause))
    return f"evt_{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def event_body(event: str, delivery_id: str, created_at: datetime, ticket: TicketFacts,
               extra: Mapping[str, Any] | None = None) -> bytes:
    """The JSON body of one event, as UTF-8 bytes with sorted keys.

    The player's address goes only with self_exclusion.requested: the platform needs it to
    find and exclude the account. The other events name the contact by its ticketd id, and
    no event carries what the player wrote.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    contact: dict[str, Any] = {"id": ticket.contact_id}
    if event == SELF_EXCLUSION:
        contact["address"] = ticket.address
    doc = {
        "id": delivery_id,
        "type": event,
        "created_at": created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "ticket": {"number": ticket.number, "category": ticket.category,
                   "priority": ticket.priority, "brand": ticket.brand},
        "contact": contact,
        "data": dict(extra or {}),
    }
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      default=str).encode()


def signature(keys: Sequence[bytes], body: bytes, timestamp: int) -> str:
    """The Ticketd-Signature value of `body` signed at `timestamp` with each key."""
    if not keys:
        raise ValueError("a webhook needs a signing key")
    signed = f"{timestamp}.".encode() + body
    macs = (hmac.new(key, signed, hashlib.sha256).hexdigest() for key in keys)
    return ",".join([f"t={timestamp}", *(f"v1={mac}" for mac in macs)])


def verify(key: bytes, body: bytes, header: str, now: int,
           tolerance: int = TOLERANCE_SECONDS) -> bool:
    """What a receiver does: some v1 matches, and the timestamp is within `tolerance`. A
    crafted header is False, never an exception: "²" is a digit to isdigit() but not to
    int(), and compare_digest raises on a str that is not ASCII, so both are bytes-safe."""
    fields = [part.partition("=") for part in header.split(",")]
    stamps = [value for name, _, value in fields if name.strip() == "t"]
    if len(stamps) != 1 or not (stamps[0].isascii() and stamps[0].isdecimal()):
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance:
        return False
    expected = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected.encode(), value.strip().encode("utf-8", "replace"))
               for name, _, value in fields if name.strip() == "v1")


def headers(event: str, delivery_id: str, signed: str) -> dict[str, str]:
    """The headers of one attempt: what it is, its stable id, its signature."""
    return {"Content-Type": "application/json", EVENT_HEADER: event,
            DELIVERY_HEADER: delivery_id, SIGNATURE_HEADER: signed,
            "User-Agent": "ticketd-webhooks"}
