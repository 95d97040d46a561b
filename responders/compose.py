"""The acknowledgement a player gets when a ticket is opened, as an EmailMessage.

Pure: the clock, keys and templates are arguments; nothing is sent or stored here.
Every header is written through ``responders.headers`` (cleaned, encoded, folded,
checked); RFC 3834 §5 marks the mail as an automatic reply, and "Precedence: bulk"
is left out on purpose, as RFC 3834 §3.1.8 asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

from parsers.model import Address
from parsers.reply import REPLY_MARKERS, reply_marker  # where the reply parser cuts a reply
from responders.envelope import recipient_mailbox, support_mailbox, thread_headers
from responders.headers import (
    UnsafeRecipient,
    clean_header_text,
    put_header,
    set_address_header,
    set_text_header,
)
from responders.identity import Identity
from responders.mime import set_body
from responders.references import (
    message_id_for,
    strip_reply_prefixes,
    strip_tags,
    subject_tag,
    tag_subject,
)
from responders.rendering import Templates
from responders.wording import human_size, localized_duration

__all__ = [
    "REPLY_MARKERS",
    "AckContext",
    "Identity",
    "Templates",
    "UnsafeRecipient",
    "acknowledgement",
    "localized_duration",
]


_PLAYER_SUBJECT_LEN = 150
_PLAYER_NAME_LEN = 60  # echoed text is what ticket spam abuses; keep it short


@dataclass(frozen=True)
class AckContext:
    ticket_number: int
    language: str
    subject: str  # the player's subject, decoded
    requester: Address
    category: str
    first_response: timedelta
    attachments: tuple[tuple[str, int], ...]  # (filename, size in bytes)
    faq_answer: str | None
    in_reply_to: str | None  # the player's Message-ID
    references: tuple[str, ...]  # the player's References, oldest first
    refused: tuple[str, ...] = ()  # attachment filenames not passed on (malware, programs)


def acknowledgement(
    ctx: AckContext, identity: Identity, *, now: datetime | None = None
) -> EmailMessage:
    """The acknowledgement of a new ticket, in the player's language, as `identity`.

    Raises UnsafeRecipient when the requester's address is not one valid mailbox
    (or is our own), ValueError when the support address or the keys are unusable.
    """
    support_name, templates = identity.name, identity.templates
    keys, subject_format = identity.keys, identity.subject_format
    support = support_mailbox(identity.address)
    recipient = recipient_mailbox(ctx.requester.addr, support, "requester")
    language = templates.language(ctx.language)
    variables = _variables(ctx, language, support_name, subject_format)
    subject_line = templates.render("ack_subject.txt.j2", language, **variables)
    msg = EmailMessage(policy=SMTP)
    set_address_header(msg, "From", support_name, support)
    set_address_header(msg, "To", ctx.requester.name, recipient)
    subject = tag_subject(clean_header_text(subject_line), ctx.ticket_number, subject_format)
    set_text_header(msg, "Subject", subject, max_len=len(subject))  # cut before tagging, not after
    put_header(msg, "Date", format_datetime(now or datetime.now(UTC)))
    domain = support.rpartition("@")[2]
    put_header(msg, "Message-ID", f"<{message_id_for(ctx.ticket_number, keys, domain)}>")
    thread_headers(msg, ctx.in_reply_to, ctx.references)
    _automatic_reply_headers(msg, support)
    _bodies(msg, identity, language, variables)
    return msg


def _automatic_reply_headers(msg: EmailMessage, support: str) -> None:
    put_header(msg, "Auto-Submitted", "auto-replied")  # RFC 3834 §5
    put_header(msg, "X-Auto-Response-Suppress", "All")  # Exchange: no out-of-office back
    put_header(msg, "X-Ticketd-Loop", support)  # how our own classify spots our mail


def _variables(ctx: AckContext, language: str, support_name: str, fmt: str) -> dict[str, Any]:
    subject = clean_header_text(ctx.subject, _PLAYER_SUBJECT_LEN)
    subject = strip_tags(strip_reply_prefixes(subject), fmt)
    return {
        "ticket_number": ctx.ticket_number,
        "tag": subject_tag(ctx.ticket_number, fmt),
        "subject": subject,
        "requester_name": clean_header_text(ctx.requester.name, _PLAYER_NAME_LEN),
        "category": ctx.category,
        "first_response": localized_duration(ctx.first_response, language),
        "attachments": tuple(
            (clean_header_text(name, 100), human_size(size, language))
            for name, size in ctx.attachments
        ),
        "refused": tuple(clean_header_text(name, 100) for name in ctx.refused),
        "faq_answer": _paragraphs(ctx.faq_answer),
        "reply_marker": reply_marker(language),
        "support_name": clean_header_text(support_name, 100),
    }


def _paragraphs(text: str | None) -> str | None:
    """Lines with any line break normalised; None for an empty answer."""
    if not text or not text.strip():
        return None
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _bodies(
    msg: EmailMessage, identity: Identity, language: str, variables: dict[str, Any]
) -> None:
    text = identity.templates.render("ack.txt.j2", language, **variables)
    html = identity.templates.render("ack.html.j2", language, **variables)
    set_body(msg, identity.signed(text), identity.signed_html(html))
