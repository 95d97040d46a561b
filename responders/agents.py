"""The mail between the desk and its agents, as EmailMessages.

* ``notification``: a player wrote (new ticket or follow-up); to the team or assignee.
* ``relay``: an agent's public answer, sent to the player in the desk's name.
* ``command_refused``: an agent's commands were not understood; nothing was applied.
* ``held_notice``: a mail claiming to come from an agent was held (invariant 5).

Pure, like ``responders.compose``: clock, keys and templates are arguments, nothing
is sent or stored, every header goes through ``responders.headers``. The relay never
carries the agent's own address: players write to the desk, not to a person's inbox,
so the name shown is the configured display name and the address is ours.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any, Literal

from parsers.commands import COMMAND_SYNTAX
from parsers.model import Address, Attachment
from parsers.reply import reply_marker
from responders.envelope import recipient_mailbox, support_mailbox, thread_headers
from responders.headers import (
    UnsafeRecipient,
    clean_header_text,
    format_address,
    put_header,
    set_address_header,
    set_text_header,
)
from responders.identity import Identity
from responders.mime import File, set_body
from responders.references import (
    agent_message_id_for,
    message_id_for,
    reply_address,
    strip_reply_prefixes,
    strip_tags,
    subject_tag,
    tag_subject,
)
from responders.rendering import Templates
from responders.wording import human_size, localized_duration

__all__ = [
    "NotificationContext",
    "RelayContext",
    "Safeguard",
    "command_refused",
    "held_notice",
    "notification",
    "relay",
]

_MAX_RECIPIENTS = 20
_SUBJECT_LEN = 150
_NAME_LEN = 60
_FACT_LEN = 40
_FILENAME_LEN = 100
_MAX_TEXT = 100_000  # the visible text of one mail; the ticket keeps all of it
_MAX_ERRORS = 25
_ERROR_LEN = 200
_ADDRESS_LIKE = re.compile(r"\S*@\S*")
# How the relay's From names the agent; "Anna, Casino Support" reads well in every language.
_VIA = {"en": "{agent} via {support}"}


@dataclass(frozen=True, kw_only=True)
class NotificationContext:
    ticket_number: int
    language: str = "en"  # of the agent team
    player: Address
    subject: str  # the player's subject, decoded
    visible_text: str  # what the player just wrote, quotes and signature cut
    category: str
    priority: str
    status: str
    sla_due: datetime | None = None  # first response or next reply due
    earlier_tickets: int = 0  # the requester's other tickets
    attachments: tuple[Attachment, ...] = ()
    player_message_id: str | None = None
    recipients: tuple[Address, ...]  # the team's group address, or the assignee
    event: Literal["new", "follow_up"] = "new"
    # sent after a pause (a burst of follow-ups is one notification): later ones are on the
    # ticket, not in this mail
    coalesced: bool = False
    brand: str = ""  # the display name of the ticket's brand, where the desk has several
    safeguarded: Safeguard | None = None  # the player's responsible-gambling flag


@dataclass(frozen=True)
class Safeguard:
    """A player who asked for exclusion or closure, or spoke of harm, under some brand."""

    since: datetime
    intent: str  # parsers.rg INTENTS
    brand: str  # the display name of the brand they asked under


@dataclass(frozen=True, kw_only=True)
class RelayContext:
    ticket_number: int
    language: str = "en"  # the player's
    player: Address
    subject: str  # the ticket's subject
    agent_name: str  # the configured display name, never an address
    text: str  # the agent's visible text, commands removed
    attachments: tuple[Attachment, ...] = ()
    in_reply_to: str | None = None  # the player's latest Message-ID
    references: tuple[str, ...] = ()  # our earlier ids and the player's, oldest first
    # The agent's own addresses: written in the text (a signature), they become ours.
    agent_addresses: tuple[str, ...] = ()


def notification(
    ctx: NotificationContext,
    identity: Identity,
    *,
    max_attachment_bytes: int = 5 * 2**20,
    now: datetime | None = None,
) -> EmailMessage:
    """Tell agents what a player wrote; their reply goes to a signed reply address.

    Sent to one recipient, its Message-ID is that recipient's credential for the ticket
    (``verify_agent_reference``); with several, it only threads: send one each.
    Raises UnsafeRecipient when a recipient is not one valid mailbox or is our own.
    """
    if ctx.event not in ("new", "follow_up"):
        raise ValueError('a notification event is "new" or "follow_up"')
    support_name, keys, templates, subject_format = _unpack(identity)
    support = support_mailbox(identity.address)
    recipients = _recipient_list(ctx.recipients, support)
    language = templates.language(ctx.language)
    now = now or datetime.now(UTC)
    attach = sum(item.size for item in ctx.attachments) <= max_attachment_bytes
    variables = _notification_variables(ctx, language, support_name, subject_format, now)
    variables.update(attached=attach, attachment_limit=human_size(max_attachment_bytes, language),
                     coalesced=ctx.coalesced)
    msg = EmailMessage(policy=SMTP)
    set_address_header(msg, "From", support_name, support)
    put_header(msg, "To", recipients)
    reply_to = reply_address(support, ctx.ticket_number, keys)
    set_address_header(msg, "Reply-To", support_name, reply_to)
    subject = _tag_first(ctx.subject, ctx.ticket_number, subject_format)
    set_text_header(msg, "Subject", subject, max_len=len(subject))
    only = ctx.recipients[0].addr if len(ctx.recipients) == 1 else None
    _identity(msg, now, ctx.ticket_number, keys, support, recipient=only)
    parent = ctx.player_message_id
    thread_headers(msg, parent, (parent,) if parent else ())
    _automatic_headers(msg, support, "auto-generated")  # for agents, not a reply to them
    files = _files(ctx.attachments) if attach else []
    _bodies(msg, templates, "notification", language, variables, files)
    return msg


def relay(
    ctx: RelayContext,
    identity: Identity,
    *,
    name_with_support: bool = True,
    now: datetime | None = None,
) -> EmailMessage:
    """An agent's public reply, to the player only, from the desk's address.

    ``name_with_support`` shows "Anna via Support" rather than "Anna". No
    Auto-Submitted header: a person wrote this mail.
    """
    support_name, keys, templates, subject_format = _unpack(identity)
    support = support_mailbox(identity.address)
    player = recipient_mailbox(ctx.player.addr, support)
    language = templates.language(ctx.language)
    agent = clean_header_text(_ADDRESS_LIKE.sub(" ", ctx.agent_name), _NAME_LEN)
    shown = _shown_name(agent, clean_header_text(support_name, 100), language, name_with_support)
    msg = EmailMessage(policy=SMTP)
    set_address_header(msg, "From", shown, support)
    set_address_header(msg, "To", ctx.player.name, player)
    subject = _relay_subject(ctx.subject, ctx.ticket_number, subject_format)
    set_text_header(msg, "Subject", subject, max_len=len(subject))
    _identity(msg, now or datetime.now(UTC), ctx.ticket_number, keys, support)
    thread_headers(msg, ctx.in_reply_to, ctx.references)
    put_header(msg, "X-Ticketd-Loop", support)  # on all we send: our mail coming back is ours
    hide = _redactor(ctx.agent_addresses, support)
    variables = {
        "tag": subject_tag(ctx.ticket_number, subject_format),
        "text": hide(_text(ctx.text)),
        "agent_name": agent,
        "support_name": clean_header_text(support_name, 100),
        "reply_marker": _marker(language),
    }
    _bodies(msg, templates, "relay", language, variables, _files(ctx.attachments, hide),
            signer=identity)
    return msg


def command_refused(
    agent: Address,
    errors: Sequence[str],
    identity: Identity,
    *,
    language: str | None = None,
    ticket_number: int | None = None,
    subject: str = "",
    in_reply_to: str | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """Tell an agent which commands were not understood and that nothing was applied.

    With a ticket number (and keys) the answer is signed and its Reply-To leads back
    to the ticket, so the agent can simply answer it with the corrected commands.
    """
    support_name, keys, templates, subject_format = _unpack(identity)
    support = support_mailbox(identity.address)
    recipient = recipient_mailbox(agent.addr, support)
    language = templates.language(language or identity.language)
    tag = subject_tag(ticket_number, subject_format) if ticket_number is not None else None
    variables = {
        "errors": [clean_header_text(error, _ERROR_LEN) for error in errors][:_MAX_ERRORS],
        "more_errors": max(len(errors) - _MAX_ERRORS, 0),
        "subject": _player_subject(subject, subject_format),
        "tag": tag,
        "commands": COMMAND_SYNTAX,
        "reply_marker": _marker(language),
        "support_name": clean_header_text(support_name, 100),
    }
    msg = EmailMessage(policy=SMTP)
    set_address_header(msg, "From", support_name, support)
    set_address_header(msg, "To", agent.name, recipient)
    if ticket_number is not None:
        reply_to = reply_address(support, ticket_number, keys)
        set_address_header(msg, "Reply-To", support_name, reply_to)
    _subject(msg, templates, "command_refused", language, variables, ticket_number, subject_format)
    _identity(msg, now or datetime.now(UTC), ticket_number, keys, support, recipient=recipient)
    thread_headers(msg, in_reply_to, ())
    _automatic_headers(msg, support, "auto-replied")
    _bodies(msg, templates, "command_refused", language, variables)
    return msg


def held_notice(
    agent_address: str,
    identity: Identity,
    *,
    agent_name: str = "",
    language: str | None = None,
    count: int = 1,
    received_at: datetime | None = None,
    last: bool = False,
    now: datetime | None = None,
    forward: bool = False,
) -> EmailMessage:
    """Tell a configured agent that a mail claiming to be from them was held (`forward`: a
    forward of a player's mail, which was not accepted and is kept in the quarantine).

    Send it only to the agent's configured address (the caller's choice). The held
    mail is someone else's until proven otherwise: nothing of it is quoted (no subject,
    text, display name or reason naming its headers: a forger would use the notice to
    reach staff with words and links of their choosing), none of its ids is referenced
    and the Message-ID is unsigned, so answering this notice joins no ticket. It says
    only the claimed address, when, and how many in the last hour; ``last`` says that
    no further notice follows for an hour.
    """
    support_name, _, templates, subject_format = _unpack(identity)
    support = support_mailbox(identity.address)
    recipient = recipient_mailbox(agent_address, support)
    language = templates.language(language or identity.language)
    now = now or datetime.now(UTC)
    variables = {
        "address": recipient,
        "count": max(count, 1),
        "received_at": _timestamp(received_at or now),
        "last": last,
        "forward": forward,
        "quiet_until": _timestamp((received_at or now) + timedelta(hours=1)),
        "support_name": clean_header_text(support_name, 100),
    }
    msg = EmailMessage(policy=SMTP)
    set_address_header(msg, "From", support_name, support)
    set_address_header(msg, "To", agent_name, recipient)
    _subject(msg, templates, "held", language, variables, None, subject_format)
    _identity(msg, now, None, (), support)
    _automatic_headers(msg, support, "auto-generated")  # the agent may never have written
    _bodies(msg, templates, "held", language, variables)
    return msg


def _unpack(identity: Identity) -> tuple[str, tuple[bytes, ...], Templates, str]:
    """(display name, keys, templates, subject format): what every composer here reads."""
    return identity.name, identity.keys, identity.templates, identity.subject_format


# --- addresses --------------------------------------------------------------------------

def _recipient_list(recipients: tuple[Address, ...], support: str) -> str:
    """The To value of a notification: each recipient checked, once each."""
    found: dict[str, str] = {}
    for recipient in recipients:
        addr = recipient_mailbox(recipient.addr, support)
        found.setdefault(addr.lower(), format_address(recipient.name, addr))
    if not found:
        raise UnsafeRecipient("a notification needs at least one recipient")
    if len(found) > _MAX_RECIPIENTS:
        raise UnsafeRecipient(f"more than {_MAX_RECIPIENTS} recipients for one notification")
    return ", ".join(found.values())


def _shown_name(agent: str, support_name: str, language: str, with_support: bool) -> str:
    if not agent:
        return support_name
    if not with_support or not support_name:
        return agent
    return _VIA.get(language, "{agent}, {support}").format(agent=agent, support=support_name)


def _redactor(addresses: tuple[str, ...], support: str) -> Callable[[str], str]:
    """A function that writes the support address where the text has an agent's own."""
    patterns = []
    for addr in addresses:
        local, at, domain = addr.strip().lower().rpartition("@")
        if at and local and domain:
            base = re.escape(local.partition("+")[0])
            patterns.append(rf"{base}(?:\+[^\s@<>]*)?@{re.escape(domain)}")
    if not patterns:
        return lambda text: text
    pattern = re.compile("|".join(patterns), re.IGNORECASE)
    return lambda text: pattern.sub(support, text)


# --- headers ----------------------------------------------------------------------------

def _identity(
    msg: EmailMessage, now: datetime, number: int | None, keys: tuple[bytes, ...], support: str,
    *, recipient: str | None = None,
) -> None:
    """Date and Message-ID: signed when the mail belongs to a ticket (and for its one
    recipient of the team, when there is one), random otherwise."""
    put_header(msg, "Date", format_datetime(now))
    domain = support.rpartition("@")[2]
    if number is not None and recipient is not None:
        msgid = agent_message_id_for(number, keys, domain, recipient)
        put_header(msg, "Message-ID", f"<{msgid}>")
    elif number is not None:
        put_header(msg, "Message-ID", f"<{message_id_for(number, keys, domain)}>")
    else:
        put_header(msg, "Message-ID", f"<{secrets.token_hex(12)}@{domain}>")


def _automatic_headers(msg: EmailMessage, support: str, kind: str) -> None:
    put_header(msg, "Auto-Submitted", kind)  # RFC 3834 §5
    put_header(msg, "X-Auto-Response-Suppress", "All")
    put_header(msg, "X-Ticketd-Loop", support)


def _player_subject(subject: str, fmt: str) -> str:
    cleaned = clean_header_text(subject, _SUBJECT_LEN)
    return strip_tags(strip_reply_prefixes(cleaned), fmt)


def _tag_first(subject: str, number: int, fmt: str) -> str:
    """``[#N] subject``: agents sort their inbox by ticket."""
    return f"{subject_tag(number, fmt)} {_player_subject(subject, fmt)}".strip()


def _relay_subject(subject: str, number: int, fmt: str) -> str:
    cleaned = _player_subject(subject, fmt)
    return tag_subject(f"Re: {cleaned}" if cleaned else "", number, fmt)


def _subject(
    msg: EmailMessage, templates: Templates, name: str, language: str,
    variables: dict[str, Any], number: int | None, fmt: str,
) -> None:
    line = clean_header_text(templates.render(f"{name}.subject.txt.j2", language, **variables))
    subject = tag_subject(line, number, fmt) if number is not None else line
    set_text_header(msg, "Subject", subject, max_len=len(subject))


# --- bodies -----------------------------------------------------------------------------

def _marker(language: str) -> str:
    return reply_marker(language)


def _text(text: str) -> str:
    """Line breaks normalised, trailing spaces gone, a very long text cut."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    joined = "\n".join(lines).strip()
    return joined if len(joined) <= _MAX_TEXT else joined[:_MAX_TEXT] + "\n[…]"


def _timestamp(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _notification_variables(
    ctx: NotificationContext, language: str, support_name: str, fmt: str, now: datetime
) -> dict[str, Any]:
    due = ctx.sla_due
    if due is not None and due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    left = due - now if due is not None else None
    return {
        "event": ctx.event,
        "tag": subject_tag(ctx.ticket_number, fmt),
        "subject": _player_subject(ctx.subject, fmt),
        "player_name": clean_header_text(ctx.player.name, _NAME_LEN),
        "player_address": clean_header_text(ctx.player.addr, 254),
        "text": _text(ctx.visible_text),
        "category": clean_header_text(ctx.category, _FACT_LEN),
        "priority": clean_header_text(ctx.priority, _FACT_LEN),
        "status": clean_header_text(ctx.status, _FACT_LEN),
        "sla_due": _timestamp(due) if due is not None else None,
        "sla_overdue": left is not None and left.total_seconds() < 0,
        "sla_left": localized_duration(abs(left), language, case="accusative") if left else "",
        "earlier_tickets": max(ctx.earlier_tickets, 0),
        "attachments": tuple(
            (_filename(item.filename), human_size(item.size, language))
            for item in ctx.attachments
        ),
        "commands": COMMAND_SYNTAX,
        "reply_marker": _marker(language),
        "support_name": clean_header_text(support_name, 100),
        "brand": clean_header_text(ctx.brand, 100),
        "safeguarded": {"since": _timestamp(ctx.safeguarded.since)[:10],
                        "intent": ctx.safeguarded.intent,
                        "brand": clean_header_text(ctx.safeguarded.brand, 100)}
        if ctx.safeguarded else None,
    }


def _bodies(
    msg: EmailMessage, templates: Templates, name: str, language: str,
    variables: dict[str, Any], files: Sequence[File] = (), *, signer: Identity | None = None,
) -> None:
    """Plain text, the HTML alternative where the mail has one (notification, relay), files;
    the brand's signature under mail to a player (`signer`)."""
    text = templates.render(f"{name}.txt.j2", language, **variables)
    html = None
    if name in ("notification", "relay"):
        html = templates.render(f"{name}.html.j2", language, **variables)
    if signer is not None:
        text, html = signer.signed(text), signer.signed_html(html) if html else html
    set_body(msg, text, html, files)


def _filename(name: str) -> str:
    return clean_header_text(name, _FILENAME_LEN) or "attachment"


def _files(
    attachments: Sequence[Attachment], hide: Callable[[str], str] | None = None
) -> list[File]:
    """Each file under its cleaned name; ``set_body`` sends a type it does not know as bytes."""
    return [
        File(_filename(hide(item.filename) if hide else item.filename), item.content_type,
             item.payload)
        for item in attachments
    ]
