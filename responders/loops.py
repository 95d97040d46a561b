"""Loop limits (DESIGN invariant 3): every mail we send because a mail came in counts, per
recipient address and per ticket, and a ticket whose exchange runs away is stopped.

* `guard` is asked before an automatic mail is queued: "" lets it go (and counts it), a
  reason withholds it. Exceeding a limit stops the ticket (`tickets.loop_stopped_at`, event
  `loop_stopped`) and queues ONE summary to operations; after that nothing automatic goes
  out about the ticket until a person acts (`resume`, called on an agent's command or
  #note: a plain reply does not, as an agent's own responder writes those).
* `responder_sign` says why a reply to our mail looks written by a responder that does not
  declare itself (no Auto-Submitted): a responder phrase in the subject, the same text as a
  recent mail of the sender on the ticket, or a second answer dated within seconds of our
  mail (once may be a person who is fast).
* `notify_when` coalesces a burst of follow-ups (player mail with no agent answer between
  them) into one deferred notification.

The limits follow Zammad (10 automatic mails per ticket in 10 minutes) and OTRS (40 a day
per address); agents and staff receive many notifications a day by design, so their
addresses have their own, higher limit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Literal

from sqlalchemy.orm import Session

from parsers.automated import responder_subject, text_fingerprint
from parsers.model import InboundMail
from storage import loops, outbox, queries
from storage.models import utcnow

log = logging.getLogger(__name__)

# Mail to a stopped ticket's participants that still goes out: the summary itself.
SUMMARY_KIND = "loop_summary"
# An answer dated within seconds of our mail to its sender; the second within
# repeat_window is a responder's.
QUICK_EVENT = "quick_answer"


@dataclass(frozen=True)
class LoopPolicy:
    per_ticket: int = 10  # automatic mails about one ticket within per_ticket_window
    per_ticket_window: timedelta = timedelta(minutes=10)
    per_address: int = 40  # automatic mails to one player's (or stranger's) address
    per_address_window: timedelta = timedelta(days=1)
    per_team_address: int = 400  # to one agent's, staff or group address in the same window
    team_addresses: frozenset[str] = frozenset()  # lower case
    responder_seconds: int = 10  # a reply this soon after our mail to the sender is a machine's
    repeat_window: timedelta = timedelta(days=1)  # a text repeated within this is a machine's
    notify_every: timedelta = timedelta(minutes=5)  # at most one notification per ticket
    held_notices_per_hour: int = 3  # per claimed agent; then one summary, then silence
    summary_to: tuple[str, ...] = ()  # who hears of a stopped ticket; empty: nobody
    summary_from: str = ""  # the desk's address


def guard(session: Session, policy: LoopPolicy, ticket_id: int | None, recipients: list[str],
          kind: str, *, count_ticket: bool = True, withhold: bool = True) -> str:
    """"" when this automatic mail may go (the caller then counts it); else why it is
    withheld. `count_ticket` False: it counts against its recipients only (a held notice: a
    forger must not silence a real ticket by naming it). `withhold` False: it counts and may
    stop the ticket, but goes (an agent's relayed words: the loop is cut at the automatic
    notification that would answer the player's responder)."""
    now = utcnow()
    if ticket_id is not None and count_ticket and loops.stopped_at(session, ticket_id):
        return "" if not withhold else "loop stopped on this ticket: waiting for a person"
    loops.prune(session, now - max(policy.per_ticket_window, policy.per_address_window))
    counted = ticket_id if count_ticket else None
    for address in recipients:
        per_ticket, per_address = loops.counts(
            session, counted, address.lower(), now - policy.per_ticket_window,
            now - policy.per_address_window)
        ticket_count = per_ticket if counted is not None else 0
        why = _over(policy, address, ticket_count, per_address)
        if why:
            # A busy team mailbox over its daily count is no loop of this ticket: the mail is
            # withheld, but the ticket is stopped only for its own count or a player's address.
            team = address.lower() in policy.team_addresses and ticket_count < policy.per_ticket
            if counted is not None and not team:
                _stop(session, policy, counted, why, kind)
            return why if withhold else ""
    return ""


def counted(session: Session, ticket_id: int | None, recipients: list[str], kind: str,
            outbox_id: int | None, *, count_ticket: bool = True) -> None:
    """Record a mail `guard` let through, once it is queued."""
    loops.record(session, ticket_id if count_ticket else None, recipients, kind, outbox_id)


def _over(policy: LoopPolicy, address: str, per_ticket: int, per_address: int) -> str:
    if per_ticket >= policy.per_ticket:
        return (f"loop limit: {per_ticket} automatic mails about this ticket within "
                f"{_span(policy.per_ticket_window)}")
    team = address.lower() in policy.team_addresses
    limit = policy.per_team_address if team else policy.per_address
    if per_address >= limit:
        return (f"loop limit: {per_address} automatic mails to this address within "
                f"{_span(policy.per_address_window)}")
    return ""


def _span(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _stop(session: Session, policy: LoopPolicy, ticket_id: int, why: str, kind: str) -> None:
    if not loops.stop(session, ticket_id, utcnow()):
        return  # already stopped by an earlier mail: its summary was the one
    queries.insert_event(session, "loop_stopped", ticket_id, reason=why, withheld=kind)
    log.warning("loop stopped", extra={"fields": {"ticket": ticket_id, "reason": why}})
    if policy.summary_to and policy.summary_from:
        number = queries.ticket_number(session, ticket_id)
        message_id, raw = loop_summary(number, why, kind, to=policy.summary_to,
                                       sender=policy.summary_from, now=utcnow())
        outbox.enqueue(session, raw=raw, message_id=message_id, envelope_from=policy.summary_from,
                       recipients=list(policy.summary_to), kind=SUMMARY_KIND, ticket_id=ticket_id)


def resume(session: Session, ticket_id: int, actor: str) -> None:
    """A person acted on the ticket: automatic mail about it may go again."""
    if loops.resume(session, ticket_id):
        queries.insert_event(session, "loop_resumed", ticket_id, actor=actor)


def loop_summary(number: int | None, why: str, kind: str, *, to: tuple[str, ...], sender: str,
                 now: datetime) -> tuple[str, bytes]:
    """(Message-ID, bytes) of the one mail that says a ticket's automatic mail was stopped.

    It quotes nothing of the mail that came in, carries no reference of the ticket (an
    answer to it joins nothing) and declares itself automatic."""
    domain = sender.rpartition("@")[2] or "localhost"
    message_id = make_msgid(idstring="loop", domain=domain)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = f"ticketd: automatic mail stopped on ticket #{number}"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["Precedence"] = "bulk"
    msg["X-Ticketd-Loop"] = sender
    msg.set_content("\n".join([
        f"ticketd stopped sending automatic mail about ticket #{number}: its exchange with",
        "a mail program looks like a loop.",
        "",
        f"Reason: {why} (the mail withheld: {kind}).",
        "",
        "Mail that arrives on the ticket is still stored; nobody is notified and nothing",
        "automatic is sent about it until an agent answers the ticket's notification with a",
        "command at the top (e.g. #status open) or a #note. A plain reply is relayed to the",
        "player but does not end the stop (an agent's mail program writes those too).",
        f"See: ticketd show {number}    ticketd tickets --loop-stopped",
    ]))
    return message_id.strip("<>"), msg.as_bytes()


def responder_sign(session: Session, policy: LoopPolicy, mail: InboundMail, ticket_id: int,
                   visible: str) -> str:
    """Why this mail on one of our tickets looks like a responder's, or ""."""
    assert mail.sender is not None
    phrase = responder_subject(mail.subject)
    if phrase:
        return f"responder subject ({phrase!r})"
    now = utcnow()
    quick = _written_within(session, policy, mail)
    if quick is not None:
        # Once may be a person answering fast (or a test); a second time is a program.
        earlier, _ = queries.count_events(session, QUICK_EVENT, mail.sender.addr,
                                          policy.repeat_window, policy.repeat_window)
        queries.insert_event(session, QUICK_EVENT, ticket_id, actor=mail.sender.addr,
                             seconds=quick)
        if earlier:
            return f"written {quick} s after our mail to the sender, again"
    mark = text_fingerprint(visible)
    if mark and any(text_fingerprint(t) == mark for t in loops.recent_texts(
            session, ticket_id, mail.sender.addr, now - policy.repeat_window)):
        return "repeats the sender's earlier text on this ticket"
    return ""


def _written_within(session: Session, policy: LoopPolicy, mail: InboundMail) -> int | None:
    """Seconds between our mail to the sender that this one answers and its Date, when that
    is within `responder_seconds` (a responder stamps its answer at once; a person's client
    when they press send). By the Date, not by our arrival time: fetch delays then never make
    a person's mail look fast; a mail without a Date shows no such sign."""
    assert mail.sender is not None
    if mail.date is None:
        return None
    sent = loops.sent_to(session, [*mail.in_reply_to, *mail.references[-3:]], mail.sender.addr)
    if sent is None:
        return None
    written = mail.date.replace(tzinfo=None) if sent.tzinfo is None else mail.date
    gap = (written - sent).total_seconds()
    # a second or two of clock skew between their host and ours still reads as "at once"
    return int(max(gap, 0)) if -2 <= gap <= policy.responder_seconds else None


def notify_when(session: Session, policy: LoopPolicy,
                ticket_id: int) -> Literal["now", "pending"] | datetime:
    """When the ticket's next notification goes: "now", "pending" (one not yet sent will
    tell), or a later time (one per `notify_every`: a burst of follow-ups is one mail)."""
    last = loops.last_notification(session, ticket_id)
    now = utcnow()
    if last is None or last.due_at <= now - policy.notify_every:
        return "now"
    if last.state == "pending" and last.attempts == 0 and last.due_at > now:
        return "pending"
    return max(last.due_at + policy.notify_every, now)
