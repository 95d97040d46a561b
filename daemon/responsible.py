"""Responsible gambling on every message: a player who asks to be excluded, to have the
account closed, or says that gambling harms them is taken up at once, whatever the ticket
was about and however far along it is.

Runs in the ingest transaction, for new mail, follow-ups, replies to an agent and appeals
alike. The decision is pure (parsers.rg); here it is applied: the ticket becomes
self_exclusion and urgent, goes to the responsible-gambling group (an assignee of another
group lets go of it), its response clock restarts on the urgent policy, and an event says
which phrase did it. `may_automate` is the one place any automatic close or survey asks.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from daemon import complaints
from daemon.sla import SlaOptions, clocks_for_safeguard
from daemon.webhooks import queue_event
from parsers.rg import RG_CATEGORY, RG_PRIORITY, RgHit, responsible_gambling
from responders.complaint_profiles import ComplaintProfile
from responders.webhooks import SELF_EXCLUSION, WebhookEvents
from storage import queries
from storage.models import Contact, Ticket, utcnow


def safeguard(session: Session, ticket_id: int, subject: str, visible: str, sender: str,
              group: str, sla: SlaOptions | None, now: datetime | None = None, *,
              webhooks: WebhookEvents | None = None,
              profile: ComplaintProfile | None = None, cause: str,
              classified: RgHit | None = None,
              received_at: datetime | None = None) -> RgHit | None:
    """Check one player message; escalate its ticket on a hit. The hit, or None. The
    platform hears of each escalation (self_exclusion.requested) when [webhooks] asks. The
    complaint (under `profile`) no longer waits on the player and takes the fast lane from
    `received_at`, when the mailbox got the message (default: now).

    `classified` is the hit of the classifier that opened the ticket as self_exclusion (an
    operator's own phrase, say), taken when the phrases here find none: a ticket opened that
    way is escalated, and announced, the same way, once. `cause` (the mail's ingest key)
    makes the event's delivery id."""
    hit = responsible_gambling(subject, visible) or classified
    if hit is None:
        return None
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None
    _flag_contact(session, ticket, hit, now or utcnow())
    if (ticket.category, ticket.priority, ticket.group) == (RG_CATEGORY, RG_PRIORITY, group) \
            and ticket.safeguarded_at is not None:
        return hit  # already where it belongs: one event per escalation, not per mail
    now = now or utcnow()
    # A ticket opened as self_exclusion/urgent already runs on the urgent clocks.
    restart = (ticket.category, ticket.priority) != (RG_CATEGORY, RG_PRIORITY)
    before = {"category": ticket.category, "priority": ticket.priority, "group": ticket.group,
              "assignee": ticket.assignee}
    ticket.category, ticket.priority, ticket.group = RG_CATEGORY, RG_PRIORITY, group
    ticket.assignee = None  # the responsible-gambling group takes it, not the previous holder
    ticket.safeguarded_at = ticket.safeguarded_at or now
    if ticket.status in ("pending", "resolved", "closed"):
        ticket.status = "open"
    session.flush()
    if sla is not None and restart:
        clocks_for_safeguard(session, ticket_id, now, sla)
    if profile is not None:
        received = received_at or now
        complaints.resume_clock(session, profile, ticket_id, sender, received)
        complaints.safeguarded(session, profile, ticket_id, sender, received)
    queries.insert_event(session, "responsible_gambling", ticket_id, actor=sender,
                         intent=hit.intent, phrase=hit.phrase, before=before)
    queue_event(session, webhooks, SELF_EXCLUSION, ticket_id, now=now, cause=cause,
                data={"intent": hit.intent})
    return hit


def _flag_contact(session: Session, ticket: Ticket, hit: RgHit, now: datetime) -> None:
    """The person is flagged, not only the ticket: every brand's ticket of theirs shows it.
    The first request is kept (when and under which brand it was made)."""
    contact = session.get(Contact, ticket.requester_id)
    if contact is None or contact.safeguarded_at is not None:
        return
    contact.safeguarded_at, contact.safeguard_intent = now, hit.intent
    contact.safeguard_brand = ticket.brand


_ASKED_BEFORE = select(Contact.safeguarded_at.is_not(None)).join(
    Ticket, Ticket.requester_id == Contact.id).where(Ticket.id == bindparam("tid"))


def known_safeguarded(session: Session, ticket_id: int, group: str) -> Contact | None:
    """A new ticket of a person who asked before (under this brand or another): it goes to
    the responsible-gambling group, with an event saying where they asked; the contact."""
    if not session.scalar(_ASKED_BEFORE, {"tid": ticket_id}):
        return None  # every new ticket asks: one indexed look-up, no objects loaded
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None
    contact = session.get(Contact, ticket.requester_id)
    if contact is None or contact.safeguarded_at is None:
        return None
    if ticket.group != group and ticket.assignee is None:
        ticket.group = group
    queries.insert_event(session, "contact_safeguarded", ticket_id,
                         intent=contact.safeguard_intent, brand=contact.safeguard_brand,
                         since=contact.safeguarded_at.isoformat())
    return contact


def may_automate(ticket: Ticket) -> bool:
    """Whether an automatic close, reminder or satisfaction survey may touch the ticket:
    never once a player has asked for exclusion or closure or spoken of harm, on this
    ticket or on any other of theirs, under any brand."""
    person = ticket.requester
    return ticket.safeguarded_at is None and ticket.category != RG_CATEGORY and (
        person is None or person.safeguarded_at is None)
