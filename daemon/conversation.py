"""Which ticket an incoming mail belongs to, and what a follow-up does to it (invariant 4).

Pure functions over facts the storage layer looked up: no I/O here, so every
rule is tested without servers. A mail joins a ticket only by a reference we
can trust (a stored or signed Message-ID, a signed reply address, or the
subject tag when the sender already takes part); anything else opens a new
ticket, linked to the one it named when it named one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from storage.queries import TicketFacts


@dataclass(frozen=True)
class References:
    """What an incoming mail points at, already checked against the database and our keys."""

    stored: TicketFacts | None = None  # ticket of a stored message named in In-Reply-To/References
    signed: TicketFacts | None = None  # ticket named by a verified signature (Message-ID or address)
    forged: TicketFacts | None = None  # ticket claimed by one of our reference shapes that fails
    tagged: tuple[TicketFacts, ...] = ()  # tickets named by subject tags, in order


@dataclass(frozen=True)
class Decision:
    action: Literal["join", "new"]
    ticket: TicketFacts | None = None  # the ticket joined, or the one a new ticket links to
    reopen: bool = False  # the joined ticket goes back to "open"
    reason: str = ""  # why a new ticket is linked instead of joined


def decide(refs: References, now: datetime, reopen_window: timedelta) -> Decision:
    target, via = _trusted(refs)
    if target is None:
        return _untrusted(refs)
    return _follow_up(target, via, now, reopen_window)


def _trusted(refs: References) -> tuple[TicketFacts | None, str]:
    if refs.stored is not None:
        return refs.stored, "reference"
    if refs.signed is not None:
        return refs.signed, "signature"
    for ticket in refs.tagged:
        if ticket.participant:
            return ticket, "subject tag"
    return None, ""


def _untrusted(refs: References) -> Decision:
    if refs.forged is not None:
        return Decision("new", refs.forged, reason="reference with a bad signature")
    if refs.tagged:
        return Decision("new", refs.tagged[0], reason="subject tag from a sender outside the ticket")
    return Decision("new")


def _follow_up(ticket: TicketFacts, via: str, now: datetime, window: timedelta) -> Decision:
    if ticket.status == "closed":
        return Decision("new", ticket, reason="reply to a closed ticket")
    if ticket.status == "resolved":
        resolved = ticket.resolved_at or now
        if now - resolved > window:
            days = window.days or round(window.total_seconds() / 86400, 2)
            return Decision("new", ticket, reason=f"reply more than {days} days after resolution")
        return Decision("join", ticket, reopen=True)
    return Decision("join", ticket, reopen=ticket.status == "pending")


def asks_for_appeal(text: str, keywords: tuple[str, ...]) -> str | None:
    """The escalation keyword a player's new text contains, if any."""
    folded = text.casefold().replace("ё", "е")
    for word in keywords:
        if word.casefold().replace("ё", "е") in folded:
            return word
    return None
