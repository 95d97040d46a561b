"""Loop limits (DESIGN invariant 3): every mail we send because a mail came in counts, per
recipient address and per ticket, and a ticket whose exchange runs away is stopped.

* `guard` is asked before an automatic mail is queued: "" lets it go (and counts it), a
  reason withholds it. Exceeding a limit stops the ticket (`tickets.loop_stopped_at`, event
  `loop_stopped`) and queues ONE summary to operations, in each recipient's language;
  after that nothing automatic goes out about the ticket until a person acts (`resume`,
  called on an agent's command or #note: a plain reply does not, as an agent's own
  responder writes those).
* `responder_sign` says why a reply to our mail looks written by a responder that does not
  declare itself (no Auto-Submitted): a responder phrase in the subject, a second answer
  dated within seconds of our mail (once may be a person who is fast), or the same text
  as a recent mail of the sender on the ticket when it also came within seconds (a person
  asks "any news?" twice; an agent sends the same canned answer twice: neither is a sign
  alone, and an agent's mail never shows it).
* `notify_when` coalesces a burst of follow-ups (player mail with no agent answer between
  them) into one deferred notification per recipient.

The limits follow Zammad (10 automatic mails per ticket in 10 minutes) and OTRS (40 a day
per address); a slow loop, one answer every few minutes, meets a daily cap per ticket (20).
Agents and staff receive many notifications a day by design, so their addresses have
their own, higher limit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Literal

from sqlalchemy.orm import Session

from parsers.automated import responder_subject, text_fingerprint
from parsers.model import InboundMail
from responders.headers import (
    format_address,
    put_header,
    set_address_header,
    set_text_header,
)
from responders.identity import Identity
from responders.mime import set_body
from responders.ops_notice import mark_automatic
from responders.rendering import Templates
from responders.wording import localized_duration
from storage import loops, outbox, queries
from storage.models import utcnow

log = logging.getLogger(__name__)

# Mail to a stopped ticket's participants that still goes out: the summary itself.
SUMMARY_KIND = "loop_summary"
# An answer dated within seconds of our mail to its sender, marked in the ledger; the second
# within repeat_window is a responder's.
QUICK_ANSWER = loops.QUICK_ANSWER
ACK_WINDOW = timedelta(days=1)  # the longest window of the acknowledgements' own limit


@dataclass(frozen=True)
class LoopPolicy:
    per_ticket: int = 10  # automatic mails about one ticket within per_ticket_window
    per_ticket_window: timedelta = timedelta(minutes=10)
    per_ticket_day: int = 20  # ... within per_ticket_day_window: a slow loop stops too
    per_ticket_day_window: timedelta = timedelta(days=1)
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
    # (address, language) of the summary's recipients who read another language than the
    # desk's (agents); the others read `desk.language`
    summary_languages: tuple[tuple[str, str], ...] = ()
    desk: Identity | None = None  # name, templates and language of the summary; None: ours, en

    def under(self, brand: Identity) -> LoopPolicy:
        """The limits as a ticket of `brand` meets them: a stopped ticket is told of from
        the brand's address, under its name and templates, whichever mailbox the mail came
        in at; operations still read the desk's language, as in every staff mail."""
        language = self.desk.language if self.desk is not None else brand.language
        return replace(self, desk=replace(brand, language=language),
                       summary_from=brand.address if self.summary_from else "")

    @property
    def kept(self) -> timedelta:
        """How long the ledger's rows matter: the longest window that counts them."""
        return max(self.per_ticket_window, self.per_ticket_day_window,
                   self.per_address_window, self.repeat_window, ACK_WINDOW)


@dataclass(frozen=True)
class Over:
    """A limit reached: which one, the count and its window."""

    limit: Literal["ticket", "ticket_day", "address"]
    count: int
    window: timedelta

    @property
    def reason(self) -> str:
        """In English, for events and the log; the summary says it in its reader's language."""
        what = "to this address" if self.limit == "address" else "about this ticket"
        return f"loop limit: {self.count} automatic mails {what} within {_span(self.window)}"


def guard(session: Session, policy: LoopPolicy, ticket_id: int | None, recipients: list[str],
          kind: str, *, count_ticket: bool = True, withhold: bool = True) -> str:
    """"" when this automatic mail may go (the caller then counts it); else why it is
    withheld. `count_ticket` False: it counts against its recipients only (a held notice: a
    forger must not silence a real ticket by naming it). `withhold` False: it counts and may
    stop the ticket, but goes (an agent's relayed words: the loop is cut at the automatic
    notification that would answer the player's responder). Reads only: the ledger's old
    rows are pruned by the records task, and each count takes the rows of its window."""
    now = utcnow()
    if ticket_id is not None and count_ticket and loops.stopped_at(session, ticket_id):
        return "" if not withhold else "loop stopped on this ticket: waiting for a person"
    counted = ticket_id if count_ticket else None
    for address in recipients:
        over = _over(policy, address, loops.counts(
            session, counted, address.lower(), now - policy.per_ticket_window,
            now - policy.per_ticket_day_window, now - policy.per_address_window))
        if over is not None:
            # A busy team mailbox over its daily count is no loop of this ticket: the mail is
            # withheld, but the ticket is stopped only for its own counts or a player's address.
            team = over.limit == "address" and address.lower() in policy.team_addresses
            if counted is not None and not team:
                _stop(session, policy, counted, over, kind)
            return over.reason if withhold else ""
    return ""


def counted(session: Session, ticket_id: int | None, recipients: list[str], kind: str,
            outbox_id: int | None, *, count_ticket: bool = True) -> None:
    """Record a mail `guard` let through, once it is queued."""
    loops.record(session, ticket_id if count_ticket else None, recipients, kind, outbox_id)


def _over(policy: LoopPolicy, address: str, counts: loops.Counts) -> Over | None:
    if counts.ticket >= policy.per_ticket:
        return Over("ticket", counts.ticket, policy.per_ticket_window)
    if counts.ticket_day >= policy.per_ticket_day:
        return Over("ticket_day", counts.ticket_day, policy.per_ticket_day_window)
    team = address.lower() in policy.team_addresses
    limit = policy.per_team_address if team else policy.per_address
    if counts.address >= limit:
        return Over("address", counts.address, policy.per_address_window)
    return None


def _span(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _stop(session: Session, policy: LoopPolicy, ticket_id: int, over: Over, kind: str) -> None:
    if not loops.stop(session, ticket_id, utcnow()):
        return  # already stopped by an earlier mail: its summary was the one
    queries.insert_event(session, "loop_stopped", ticket_id, reason=over.reason, withheld=kind)
    log.warning("loop stopped", extra={"fields": {"ticket": ticket_id, "reason": over.reason}})
    if not (policy.summary_to and policy.summary_from):
        return
    number = queries.ticket_number(session, ticket_id)
    desk = policy.desk or Identity(policy.summary_from, "")
    chosen = dict(policy.summary_languages)
    by_language: dict[str, list[str]] = {}
    for address in policy.summary_to:  # one mail per language read; usually one
        language = desk.templates.language(chosen.get(address.lower()) or desk.language)
        by_language.setdefault(language, []).append(address)
    for language, to in by_language.items():
        try:
            message_id, raw = loop_summary(number, over, kind, to=tuple(to), desk=desk,
                                           sender=policy.summary_from, language=language,
                                           now=utcnow())
        except ValueError as err:  # an address no header can carry: the flag stays all the same
            log.warning("loop summary not sent", extra={"fields": {"ticket": ticket_id,
                                                                   "reason": str(err)}})
            continue
        outbox.enqueue(session, raw=raw, message_id=message_id, envelope_from=policy.summary_from,
                       recipients=to, kind=SUMMARY_KIND, ticket_id=ticket_id)


def resume(session: Session, ticket_id: int, actor: str) -> None:
    """A person acted on the ticket: automatic mail about it may go again."""
    if loops.resume(session, ticket_id):
        queries.insert_event(session, "loop_resumed", ticket_id, actor=actor)


# What the summary tells a person to type; commands are the same in every language.
SHOW_COMMAND = "ticketd show {number}"
LIST_COMMAND = "ticketd tickets --loop-stopped"
RESUME_COMMANDS = ("#status open", "#note")


def loop_summary(number: int | None, over: Over, kind: str, *, to: tuple[str, ...],
                 desk: Identity, sender: str, language: str, now: datetime) -> tuple[str, bytes]:
    """(Message-ID, bytes) of the one mail that says a ticket's automatic mail was stopped,
    in `language` (templates loop_stopped*.j2 of the desk).

    It quotes nothing of the mail that came in, carries no reference of the ticket (an
    answer to it joins nothing) and declares itself automatic."""
    templates: Templates = desk.templates
    variables = {
        "ticket_number": number, "limit": over.limit, "count": over.count,
        "window": localized_duration(over.window, language, case="accusative"), "withheld": kind,
        "show_command": SHOW_COMMAND.format(number=number), "list_command": LIST_COMMAND,
        "resume_commands": RESUME_COMMANDS, "support_name": desk.name,
    }
    domain = sender.rpartition("@")[2] or "localhost"
    message_id = make_msgid(idstring="loop", domain=domain)
    msg = EmailMessage(policy=SMTP)
    set_address_header(msg, "From", desk.name, sender)
    put_header(msg, "To", ", ".join(format_address("", address) for address in to))
    set_text_header(msg, "Subject",
                    templates.render("loop_stopped.subject.txt.j2", language, **variables))
    put_header(msg, "Date", format_datetime(now if now.tzinfo else now.replace(tzinfo=UTC)))
    put_header(msg, "Message-ID", message_id)
    mark_automatic(msg)
    put_header(msg, "X-Ticketd-Loop", sender)
    set_body(msg, templates.render("loop_stopped.txt.j2", language, **variables))
    return message_id.strip("<>"), msg.as_bytes()


def responder_sign(session: Session, policy: LoopPolicy, mail: InboundMail, ticket_id: int,
                   visible: str, *, staff: bool = False) -> str:
    """Why this mail on one of our tickets looks like a responder's, or "". `staff`: an
    agent's or staff member's mail, whose repeated text is never a sign (a canned answer
    sent twice is still theirs to send)."""
    assert mail.sender is not None
    phrase = responder_subject(mail.subject)
    if phrase:
        return f"responder subject ({phrase!r})"
    now = utcnow()
    sent = loops.sent_to(session, [*mail.in_reply_to, *mail.references[-3:]], mail.sender.addr)
    quick = _written_within(policy, mail, sent)
    if quick is not None:
        # Once may be a person answering fast (or a test); a second time is a program.
        earlier = loops.count_kind(session, mail.sender.addr, QUICK_ANSWER,
                                   now - policy.repeat_window)
        loops.record(session, ticket_id, [mail.sender.addr], QUICK_ANSWER, None, now)
        if earlier:
            return f"written {quick} s after our mail to the sender, again"
    if staff:
        return ""
    mark = text_fingerprint(visible)
    if not mark or not any(text_fingerprint(t) == mark for t in loops.recent_texts(
            session, ticket_id, mail.sender.addr, now - policy.repeat_window)):
        return ""
    # A text said twice is a sign only with another: "any news?" twice is a person. A
    # responder that names none of our mails is measured against our latest one to it.
    if quick is None and sent is None:
        quick = _written_within(policy, mail, loops.last_sent_to(
            session, mail.sender.addr, now - policy.repeat_window))
    if quick is None:
        return ""
    return f"repeats the sender's earlier text on this ticket, written {quick} s after our mail"


def _written_within(policy: LoopPolicy, mail: InboundMail, sent: datetime | None) -> int | None:
    """Seconds between `sent` (when our mail to the sender went) and this mail's Date,
    when that is within `responder_seconds` (a responder stamps its answer at once; a
    person's client when they press send). By the Date, not by our arrival time: fetch
    delays then never make a person's mail look fast; a mail without a Date shows no such
    sign."""
    if mail.date is None or sent is None:
        return None
    written = mail.date.replace(tzinfo=None) if sent.tzinfo is None else mail.date
    gap = (written - sent).total_seconds()
    # a second or two of clock skew between their host and ours still reads as "at once"
    return int(max(gap, 0)) if -2 <= gap <= policy.responder_seconds else None


def notify_when(session: Session, policy: LoopPolicy, ticket_id: int,
                address: str) -> Literal["now", "pending"] | datetime:
    """When the ticket's next notification to `address` goes: "now", "pending" (one to
    them not yet sent will tell), or a later time (one per `notify_every`: a burst of
    follow-ups is one mail). Per recipient: a new assignee never waits on the mail of the
    one before."""
    last = loops.last_notification(session, ticket_id, address)
    now = utcnow()
    if last is None or last.due_at <= now - policy.notify_every:
        return "now"
    if last.state == "pending" and last.attempts == 0 and last.due_at > now:
        return "pending"
    return max(last.due_at + policy.notify_every, now)
