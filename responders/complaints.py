"""The complaint lifecycle's mail, as EmailMessages and texts (pure, like responders.agents).

* ``dispute_paragraph``: where a player may take the complaint beyond us, in their language.
* ``final_text``: an agent's ``#final`` text with the closing paragraph; it goes out as the
  agent's relay.
* ``player_letter``: to the player, from the desk: the final-response ("deadlock") letter the
  guard sends at the deadline, and the written notice of an extension.
* ``staff_letter``: to the assignee or the head of support: a reminder at a profile's point,
  or (``deadline_action = "head_of_support"``) the letter to send.

Each player text is in the player's language (the template of that language, else English);
staff mail is in the desk's language. Templates name the ADR entity; none is ever English
inside another language unless the operator wrote it so (`[responders] dispute_text`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

from responders.envelope import recipient_mailbox, support_mailbox, thread_headers
from responders.headers import clean_header_text, put_header, set_address_header, set_text_header
from responders.identity import Identity
from responders.mime import set_body
from responders.references import (
    message_id_for,
    reply_address,
    strip_tags,
    subject_tag,
    tag_subject,
)

__all__ = ["LetterContext", "dispute_paragraph", "final_text", "player_letter", "staff_letter"]

PLAYER_LETTERS = ("deadlock", "extension")
STAFF_LETTERS = ("reminder", "handoff")


@dataclass(frozen=True, kw_only=True)
class LetterContext:
    ticket_number: int
    language: str  # the player's
    player: str  # the player's address
    player_name: str = ""
    subject: str = ""  # the ticket's
    received_at: datetime
    final_due_at: datetime | None = None
    enquiry_due_at: datetime | None = None  # an ADR body's enquiry
    reason: str = ""  # an extension's
    point: str = ""  # a reminder's: "2w before", "deadline"
    assignee: str | None = None
    nonce: str | None = None  # a stable Message-ID for the guard's mail (one per stage)
    now: datetime


def _adr(identity: Identity, language: str) -> dict[str, str]:
    entity = identity.complaints.adr_entity(language)
    return {"adr_name": entity.name, "adr_url": entity.url, "adr_address": entity.address}


def dispute_paragraph(identity: Identity, language: str) -> str:
    """The paragraph of a final answer naming the ADR entity, in `language`. The operator's
    `[responders] dispute_text` replaces the English one only (old configs keep theirs)."""
    language = identity.templates.language(language)
    if language == "en" and identity.dispute_text:
        return identity.dispute_text
    return identity.templates.render("dispute.txt.j2", language,
                                     **_adr(identity, language)).strip()


def final_text(identity: Identity, language: str, text: str) -> str:
    """An agent's final decision as the player reads it: the text, then the closing words."""
    language = identity.templates.language(language)
    return identity.templates.render("final.txt.j2", language, text=text.strip(),
                                     dispute=dispute_paragraph(identity, language)).strip()


def _variables(ctx: LetterContext, identity: Identity, language: str) -> dict[str, Any]:
    fmt = identity.subject_format
    return {
        "tag": subject_tag(ctx.ticket_number, fmt),
        "subject": strip_tags(clean_header_text(ctx.subject, 150), fmt),
        "player_name": clean_header_text(ctx.player_name, 60),
        "player_address": clean_header_text(ctx.player, 254),
        "received": _day(ctx.received_at),
        "final_due": _day(ctx.final_due_at) if ctx.final_due_at else "",
        "enquiry_due": _day(ctx.enquiry_due_at) if ctx.enquiry_due_at else "",
        "reason": ctx.reason.strip(),
        "point": ctx.point,
        "assignee": ctx.assignee or "",
        "dispute": dispute_paragraph(identity, language),
        "support_name": clean_header_text(identity.name, 100),
        **_adr(identity, language),
    }


def _day(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d")


def _compose(ctx: LetterContext, identity: Identity, name: str, language: str, to: str,
             to_name: str, variables: dict[str, Any]) -> EmailMessage:
    support = support_mailbox(identity.address)
    recipient = recipient_mailbox(to, support)
    templates, fmt = identity.templates, identity.subject_format
    msg = EmailMessage(policy=SMTP)
    set_address_header(msg, "From", identity.name, support)
    set_address_header(msg, "To", to_name, recipient)
    if identity.keys:
        set_address_header(msg, "Reply-To", identity.name,
                           reply_address(support, ctx.ticket_number, identity.keys))
    line = clean_header_text(templates.render(f"{name}.subject.txt.j2", language, **variables))
    subject = tag_subject(line, ctx.ticket_number, fmt)
    set_text_header(msg, "Subject", subject, max_len=len(subject))
    put_header(msg, "Date", format_datetime(ctx.now))
    msgid = message_id_for(ctx.ticket_number, identity.keys, support.rpartition("@")[2],
                           nonce=ctx.nonce)
    put_header(msg, "Message-ID", f"<{msgid}>")
    thread_headers(msg, None, ())
    put_header(msg, "Auto-Submitted", "auto-generated")  # RFC 3834 §5: no one answered this
    put_header(msg, "X-Auto-Response-Suppress", "All")
    put_header(msg, "X-Ticketd-Loop", support)
    text = templates.render(f"{name}.txt.j2", language, **variables)
    set_body(msg, identity.signed(text) if to == ctx.player else text)
    return msg


def player_letter(kind: str, ctx: LetterContext, identity: Identity) -> EmailMessage:
    """The deadlock letter or the extension notice, to the player, in their language.

    Raises UnsafeRecipient when the player's address is not one valid mailbox."""
    if kind not in PLAYER_LETTERS:
        raise ValueError(f"no player letter {kind!r}")
    language = identity.templates.language(ctx.language)
    variables = _variables(ctx, identity, language)
    return _compose(ctx, identity, kind, language, ctx.player, ctx.player_name, variables)


def staff_letter(kind: str, ctx: LetterContext, identity: Identity, to: str) -> EmailMessage:
    """A reminder at a point, or the deadlock letter handed to the head of support to send:
    in the desk's language, the letter itself quoted in the player's."""
    if kind not in STAFF_LETTERS:
        raise ValueError(f"no staff letter {kind!r}")
    language = identity.templates.language(identity.language)
    variables = _variables(ctx, identity, language)
    if kind == "handoff":
        player_language = identity.templates.language(ctx.language)
        variables["letter"] = identity.templates.render(
            "deadlock.txt.j2", player_language, **_variables(ctx, identity, player_language))
    name = "reminder" if kind == "reminder" else "deadlock_handoff"
    return _compose(ctx, identity, name, language, to, "", variables)
