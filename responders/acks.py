"""Whether a new ticket gets an acknowledgement, and writing it to the outbox (invariants 2, 3).

Called inside the ingest transaction, so the outbox row commits with the
ticket or not at all. The acknowledgement is also stored as an outgoing
message of the ticket, so the player's reply to it threads by a stored id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import timedelta

from jinja2 import TemplateNotFound
from sqlalchemy.orm import Session

from parsers.automated import bounce_subject
from parsers.model import InboundMail
from responders import mime
from responders.compose import AckContext, acknowledgement
from responders.headers import UnsafeRecipient
from responders.identity import Identity
from responders.loops import ACK_WINDOW, LoopPolicy, counted, guard
from responders.references import strip_reply_prefixes
from responders.rendering import Templates
from responders.sla import DEFAULT_POLICIES, DEFAULT_RULES, Policy, select_policy
from storage import loops as loop_counts
from storage import outbox, queries
from storage.models import utcnow
from storage.queries import TicketSummary

log = logging.getLogger(__name__)

ACK_KIND = "ack"  # the acknowledgements' rows in the loop ledger (storage/loops.py)


@dataclass(frozen=True)
class AckPolicy:
    identity: Identity  # who acknowledges: address, name, keys, templates, subject tag
    sla_policies: dict[str, Policy] | None = None
    per_address_10min: int = 10  # automatic mails to one address: a loop with a
    per_address_day: int = 40  # broken responder stops within a few messages
    loops: LoopPolicy | None = None  # the limits every automatic mail counts against


def acknowledge(session: Session, policy: AckPolicy, ticket: TicketSummary,
                mail: InboundMail, refused: tuple[str, ...] = ()) -> str:
    """Queue the acknowledgement of a new ticket; returns "" or why none was sent.
    `refused` names the attachments we keep from the agents (malware, programs)."""
    assert mail.sender is not None
    why = _forwarded_report(mail) or _withheld(session, policy, mail.sender.addr)
    if not why and policy.loops is not None:
        why = guard(session, policy.loops, ticket.id, [mail.sender.addr], "ack")
    if why:
        queries.insert_event(session, "ack_withheld", ticket.id, reason=why)
        return why
    try:
        msg = acknowledgement(_context(policy, ticket, mail, refused), policy.identity)
    except UnsafeRecipient as err:
        queries.insert_event(session, "ack_withheld", ticket.id, reason=str(err))
        return str(err)
    message_id = mime.message_id(msg)
    subject = mime.header_text(msg, "Subject") or ""
    raw = mime.wire_bytes(msg)
    identity = policy.identity
    outbox_id = outbox.enqueue(session, raw=raw, message_id=message_id,
                               envelope_from=identity.address, recipients=[mail.sender.addr],
                               kind="ack", ticket_id=ticket.id, shown=mime.shown(msg))
    # In the loop ledger whether or not [loops] applies: the acknowledgements' own limit
    # below counts them there (no event is written only to be counted).
    counted(session, ticket.id, [mail.sender.addr], ACK_KIND, outbox_id)
    queries.insert_message(
        session, ticket_id=ticket.id, direction="out", kind="ack", sender=identity.address,
        sender_name=identity.name, subject=subject, header_message_id=message_id,
        in_reply_to=mail.message_id, references=None, raw_sha256=None, raw_size=len(raw),
        visible_text="", full_text="",
    )
    return ""


def _forwarded_report(mail: InboundMail) -> str:
    """A person forwarding a bounce ("Fwd: Returned mail: ...") gets a ticket but no automatic
    answer: forwarders that pass bounces on are how mail loops between desks begin."""
    stripped = strip_reply_prefixes(mail.subject)
    if stripped == mail.subject:
        return ""
    reason = bounce_subject(replace(mail, subject=stripped), frozenset())
    return f"forwarded delivery report ({reason})" if reason else ""


def _withheld(session: Session, policy: AckPolicy, address: str) -> str:
    if not policy.identity.keys:
        return "no signing key configured ([security] secret_file)"
    now = utcnow()
    bouncing, recent, daily = loop_counts.standing(
        session, address, ACK_KIND, now - timedelta(minutes=10), now - ACK_WINDOW)
    if bouncing:
        return "the address is bouncing"
    if recent >= policy.per_address_10min:
        return f"rate limit: {recent} automatic mails to this address in 10 minutes"
    if daily >= policy.per_address_day:
        return f"rate limit: {daily} automatic mails to this address today"
    return ""


def _context(policy: AckPolicy, ticket: TicketSummary, mail: InboundMail,
             refused: tuple[str, ...] = ()) -> AckContext:
    assert mail.sender is not None
    sla = select_policy(ticket.category, ticket.priority, policy.sla_policies or DEFAULT_POLICIES,
                        DEFAULT_RULES)
    return AckContext(
        ticket_number=ticket.number, language=ticket.language, subject=mail.subject,
        requester=mail.sender, category=ticket.category, first_response=sla.first_response,
        attachments=tuple((a.filename, a.size) for a in mail.attachments if not a.inline),
        faq_answer=_faq(policy.identity.templates, ticket.category, ticket.language),
        in_reply_to=mail.message_id, references=mail.references, refused=refused,
    )


def _faq(templates: Templates, category: str, language: str) -> str | None:
    try:
        return templates.render(f"faq_{category}.txt.j2", language).strip() or None
    except TemplateNotFound:
        return None
