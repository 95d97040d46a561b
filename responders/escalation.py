"""The SLA warning and the two breach escalations, as EmailMessages to the desk's own people.

Pure: the clock, keys and templates are arguments; nothing is sent or stored here. Every
header goes through ``responders.headers`` (DESIGN invariant 8). The mail is
"Auto-Submitted: auto-generated" (RFC 3834 §5: not a reply to anyone) and carries our loop
header, so that if it ever comes back into the support mailbox it is recognised as ours.

The Message-ID is signed for the ticket, so a reply ("#assign me") threads into it; given a
nonce (the monitor passes one per clock and stage) it is the same for the same escalation,
and the outbox's unique Message-ID refuses a second copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from responders.headers import (
    Folded,
    UnsafeRecipient,
    clean_header_text,
    folded,
    format_address,
    put_folded,
    single_recipient,
    text_header,
)
from responders.identity import Identity
from responders.mime import set_body
from responders.references import (
    agent_message_id_for,
    strip_reply_prefixes,
    strip_tags,
    subject_tag,
    tag_subject,
)
from responders.wording import localized_duration

__all__ = ["ASSIGN_COMMAND", "STAGE_NAMES", "EscalationContext", "escalation"]

ASSIGN_COMMAND = "#assign me"
STAGE_NAMES = {1: "warning", 2: "level1", 3: "level2"}
_SUBJECT_LEN = 150
_QUESTION_LEN = 2000  # enough to judge the ticket; the whole mail is one command away


@dataclass(frozen=True)
class EscalationContext:
    ticket_number: int
    stage: int  # 1 warning, 2 level 1 (the breach), 3 level 2
    clock_kind: str  # first_response | next_response | resolution
    policy: str
    promised: timedelta  # the policy's working time for this clock
    started_at: datetime  # when the clock started: the player has waited since
    due_at: datetime
    now: datetime
    subject: str  # the ticket's subject, as the player wrote it
    question: str  # the visible text of the player's first message
    assignee: str | None = None  # None: nobody holds the ticket
    nonce: str | None = None  # the same nonce gives the same Message-ID


def escalation(
    ctx: EscalationContext,
    identity: Identity,
    *,
    to: str,
    timezone: str = "UTC",
) -> EmailMessage:
    """The mail of `ctx.stage` to `to`, as `identity` and in its (the desk's) language.

    Raises UnsafeRecipient when `to` is not one valid mailbox or is the support address,
    ValueError for an unknown stage, an unusable support address or no signing key.
    """
    if ctx.stage not in STAGE_NAMES:
        raise ValueError(f"no escalation mail for stage {ctx.stage!r}")
    desk = _desk(identity.address, identity.name)
    templates, keys, subject_format = identity.templates, identity.keys, identity.subject_format
    recipient, to_value = _recipient(to, desk.support)
    language = templates.language(identity.language)
    variables = _variables(ctx, language, timezone, desk.name, subject_format)
    msg = EmailMessage(policy=SMTP)
    sender, receiver, *marks = _fixed_headers(desk, to_value)
    line = clean_header_text(templates.render("escalation_subject.txt.j2", language, **variables))
    subject = tag_subject(line, ctx.ticket_number, subject_format)
    # The recipient's credential for the ticket: staff answer with "#assign me".
    msgid = agent_message_id_for(ctx.ticket_number, keys, desk.domain, recipient,
                                 nonce=ctx.nonce)
    put_folded(msg, (sender, receiver, text_header("Subject", subject, max_len=len(subject)),
                     _date(ctx.now), folded("Message-ID", f"<{msgid}>"), *marks))
    text = templates.render("escalation.txt.j2", language, **variables)
    set_body(msg, text)
    return msg


# A pass of the SLA monitor writes thousands of these mails from one desk to a few staff
# addresses at one moment: what depends only on those is worked out once (the caches hold
# configured addresses and names, never a player's).

class _Desk(NamedTuple):
    support: str  # the support address as an addr-spec
    from_value: str  # the From header's value
    domain: str  # of our Message-IDs
    name: str  # the display name, cleaned, as the templates show it


@lru_cache(maxsize=32)
def _desk(address: str, name: str) -> _Desk:
    support = single_recipient(address)
    if support is None:
        raise ValueError("the support address is not a valid mail address")
    return _Desk(support, format_address(name, support), support.rpartition("@")[2],
                 clean_header_text(name, 100))


@lru_cache(maxsize=256)
def _recipient(to: str, support: str) -> tuple[str, str]:
    """(addr-spec, To header value) of an escalation address."""
    recipient = single_recipient(to)
    if recipient is None:
        raise UnsafeRecipient("the escalation address is not one valid mailbox")
    if recipient.lower() == support.lower():  # it would come back to the desk as a ticket
        raise UnsafeRecipient("the escalation address is the support address")
    return recipient, format_address("", recipient)


@lru_cache(maxsize=256)
def _fixed_headers(desk: _Desk, to_value: str) -> tuple[Folded, ...]:
    """From, To, then the headers after the Message-ID, checked and folded once per desk
    and escalation address."""
    return (folded("From", desk.from_value), folded("To", to_value),
            folded("Auto-Submitted", "auto-generated"),  # RFC 3834 §5
            folded("X-Auto-Response-Suppress", "All"),  # Exchange: no out-of-office back
            folded("X-Ticketd-Loop", desk.support))  # how our own classify spots our mail


def _date(now: datetime) -> Folded:
    # The offset in the key: 12:00 UTC equals 14:00+02:00, and each is written as it is.
    return _formatted_date(now, now.utcoffset())


@lru_cache(maxsize=8)
def _formatted_date(now: datetime, _offset: timedelta | None) -> Folded:
    return folded("Date", format_datetime(now))


def _variables(ctx: EscalationContext, language: str, timezone: str, support_name: str,
               fmt: str) -> dict[str, Any]:
    def duration(delta: timedelta, case: str = "nominative") -> str:
        return localized_duration(max(delta, timedelta(0)), language, case=case)

    subject = strip_tags(strip_reply_prefixes(clean_header_text(ctx.subject, _SUBJECT_LEN)), fmt)
    due = ctx.due_at.astimezone(ZoneInfo(timezone))
    promised, promised_in = _promised(ctx.promised, language)
    return {
        "stage": ctx.stage,
        "kind": ctx.clock_kind,
        "policy": ctx.policy,
        "tag": subject_tag(ctx.ticket_number, fmt),
        "subject": subject,
        "promised": promised,
        "promised_in": promised_in,  # "within" / "за"
        "waited": duration(ctx.now - ctx.started_at),
        "left": duration(ctx.due_at - ctx.now, "accusative"),  # "in" / "через"
        "overdue": duration(ctx.now - ctx.due_at, "accusative"),  # "by", "ago" / "назад"
        "due": f"{due:%Y-%m-%d %H:%M} {timezone}",
        "assignee": clean_header_text(ctx.assignee, 100) if ctx.assignee else None,
        "command": ASSIGN_COMMAND,
        "question": _quoted_lines(ctx.question),
        "support_name": support_name,  # cleaned by _desk
    }


@lru_cache(maxsize=64)
def _promised(promised: timedelta, language: str) -> tuple[str, str]:
    """A policy's promise in words (nominative, accusative): the same for every mail of it."""
    promised = max(promised, timedelta(0))
    return (localized_duration(promised, language),
            localized_duration(promised, language, case="accusative"))


def _quoted_lines(text: str) -> list[str]:
    """The player's text as lines to quote: line breaks normalised, NUL dropped, cut short."""
    text = text.replace("\x00", "").strip()
    if len(text) > _QUESTION_LEN:
        text = text[: _QUESTION_LEN - 1].rstrip() + "…"
    return [line.rstrip() for line in text.splitlines()]
