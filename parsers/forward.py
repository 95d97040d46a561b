"""The player's original mail inside an agent's forward.

An agent forwards a player's complaint from their own inbox to the support
address; the ticket belongs to the player, not to the agent. The original is
read from, in this order:

1. an attached message/rfc822 part ("Forward as attachment"), parsed whole;
2. an inline forward block in the text: a separator line (Gmail, Thunderbird,
   Yandex, Mail.ru "Forwarded message" / "Пересылаемое сообщение", Apple Mail
   "Begin forwarded message:", Outlook "Original Message" or its underscore
   rule) followed by header fields (From/От/От кого, Date/Sent/Дата/Отправлено,
   Subject/Тема, To/Кому, ...) or by Yandex's 'DD.MM.YYYY, HH:MM, "Name" <a@b>:'
   line; or, when the subject says it is a forward, an Outlook field block
   without any separator.

Only a separator that names a forward is evidence by itself. The attached
message, "Original Message", Outlook's rule and a bare field block are read only
under a forward subject ("Fwd:", "FW:", "Пересл.:", "WG:", "TR:", ...): replies
carry them too, and a bounce carries an attached message.

Players forward too (a bank's notice, a shop's receipt): whether the
forwarder is an agent, so that the ticket belongs to the original sender, is
the caller's decision.

Everything is line by line with a bounded look-ahead, and patterns only see
the first ``LINE_CAP`` characters of a line, so hostile text stays linear.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from parsers.errors import RejectedMail
from parsers.mail import parse
from parsers.model import Address, Attachment, InboundMail

# One list of client separators and one line cap for quotes and forwards alike.
from parsers.reply import FORWARD_SEPARATOR, LINE_CAP


@dataclass(frozen=True)
class Forwarded:
    sender: Address  # the original author, lower-cased address
    subject: str  # the original subject, decoded, one line
    text: str  # the original body text
    date: str | None  # as written
    message_id: str | None  # from an attached message/rfc822, else None
    # The original's attachments when it was attached whole; else the forwarding mail's own.
    attachments: tuple[Attachment, ...]


def forwarded_original(mail: InboundMail, raw: bytes | None = None) -> Forwarded | None:
    """The original mail an agent forwarded, or None when nothing reliable says who wrote it.

    ``raw`` (the forwarding mail's bytes) is not needed: ``mail`` keeps an
    attached message whole, as bytes that parse to the same values.
    """
    forward_subject = is_forward_subject(mail.subject)
    if forward_subject:
        attached = _attached_original(mail)
        if attached is not None:
            return attached
    return _inline_original(mail, forward_subject)


# --- subjects -------------------------------------------------------------------

# "Fwd:", "FW:", "Fwd[2]:", "Пересл.:", "Перес.:", "WG:", "TR:", behind up to
# three "[EXT]"-like tags that gateways put in front.
_FORWARD_PREFIX = re.compile(
    r"\s*(?:\[[^\[\]]{0,40}\]\s*){0,3}"
    r"(?:fwd?|перес(?:л(?:ано)?)?|wg|tr)\s*(?:\[\d{1,3}\]|\(\d{1,3}\))?\.?\s*:\s*",
    re.I,
)
_MAX_PREFIXES = 10


def is_forward_subject(subject: str) -> bool:
    return bool(_FORWARD_PREFIX.match(subject[:LINE_CAP]))


def original_subject(subject: str) -> str:
    """The subject without its forward prefixes: "Fwd: FW: Deposit" -> "Deposit"."""
    for _ in range(_MAX_PREFIXES):
        match = _FORWARD_PREFIX.match(subject[:LINE_CAP])
        if not match:
            break
        subject = subject[match.end() :]
    return _one_line(subject)


# --- 1. an attached message -------------------------------------------------------


def _attached_original(mail: InboundMail) -> Forwarded | None:
    """The first attached message that parses and names its sender."""
    for part in mail.attachments:
        if part.content_type != "message/rfc822":
            continue
        try:
            inner = parse(part.payload)
        except RejectedMail:
            continue
        if inner.sender is None or "@" not in inner.sender.addr:
            continue
        return Forwarded(
            sender=inner.sender,
            subject=inner.subject or original_subject(mail.subject),
            text=_tidy(_lines_of(inner.text)),
            date=inner.header("date") or None,
            message_id=inner.message_id,
            attachments=inner.attachments,
        )
    return None


# --- 2. an inline forward block -----------------------------------------------------

_BLANKS_AFTER_SEPARATOR = 2  # Apple Mail puts one blank line under "Begin forwarded message:"
_BLOCK_LINES = 12  # a forward header block, wrapped values included, is never longer
_CONTINUATION_SLACK = 2  # lines a wrapped value may take before the next field

# Separators of the reply module that name a forward rather than "the original".
_FORWARD_WORDS = (
    "forward",
    "пересыла",
    "переадрес",
    "weitergeleitet",
    "transféré",
    "reenviado",
)

# The field names forward headers use, lower-case, to the key they stand for.
_FIELD_KEYS = {
    "from": "from", "от": "from", "от кого": "from", "von": "from", "de": "from",
    "date": "date", "sent": "date", "дата": "date", "отправлено": "date",
    "gesendet": "date", "datum": "date", "envoyé": "date",
    "subject": "subject", "тема": "subject", "betreff": "subject", "objet": "subject",
    "to": "to", "кому": "to", "an": "to", "à": "to",
    "cc": "cc", "копия": "cc", "kopie": "cc",
    "reply-to": "reply-to", "обратный адрес": "reply-to",
    "organization": "organization", "организация": "organization",
}  # fmt: skip
# Longer names first, so that "От кого:" is not read as "От".
_FIELD = re.compile(
    r"\**\s*("
    + "|".join(sorted((k.replace(" ", r"\s+") for k in _FIELD_KEYS), key=len, reverse=True))
    + r")\s*\**\s*:",
    re.I,
)
# Yandex: '12.03.2024, 14:05, "Иван Петров" <ivan@yandex.ru>:' (the sender is read apart).
_YANDEX_DATE = re.compile(r"\d{1,2}\.\d{1,2}\.\d{2,4},?\s+\d{1,2}:\d{2}(?::\d{2})?,\s*")
# Yandex and Mail.ru close the forwarded text.
_END_OF_FORWARD = re.compile(
    r"-{2,}\s*(?:конец\s+пересылаемого\s+сообщения|end\s+of\s+forwarded\s+message)\s*-{2,}",
    re.I,
)
_ADDRESS = re.compile(r"[^\s\"'<>()\[\],;:\\@]+@[^\s\"'<>()\[\],;:\\@]+")


class _Lines:
    """The text's lines, each line's head (stripped, capped) and its field, worked out once."""

    __slots__ = ("lines", "n", "heads", "fields")

    def __init__(self, text: str) -> None:
        self.lines = _lines_of(text)
        self.n = len(self.lines)
        self.heads = [line.strip()[:LINE_CAP] for line in self.lines]
        self.fields = [_field(head) if ":" in head else None for head in self.heads]


@dataclass(frozen=True)
class _Block:
    sender: Address
    subject: str | None
    date: str | None
    end: int  # the first line after the header block


def _inline_original(mail: InboundMail, forward_subject: bool) -> Forwarded | None:
    view = _Lines(mail.text)
    for i in range(view.n):
        block = _block_from(view, i, forward_subject)
        if block is not None:
            return Forwarded(
                sender=block.sender,
                subject=block.subject or original_subject(mail.subject),
                text=_original_text(view, block.end),
                date=block.date,
                message_id=None,
                attachments=mail.attachments,
            )
    return None


def _block_from(view: _Lines, i: int, forward_subject: bool) -> _Block | None:
    """The forward header block that line ``i`` starts, if it starts one."""
    head = view.heads[i]
    if not head:
        return None
    kind = _separator_kind(head)
    if kind is not None:
        if kind != "forward" and not forward_subject:
            return None
        start = _skip_blank(view, i + 1, _BLANKS_AFTER_SEPARATOR)
        return _yandex_block(view, start) or _field_block(view, start, min_fields=1)
    field = view.fields[i]
    if forward_subject and field is not None and field[0] == "from":
        return _field_block(view, i, min_fields=2)
    return None


def _separator_kind(head: str) -> str | None:
    """The kind of separator line: "forward" names a forward; "original" may be a reply's."""
    if head[0] in "-_=*" or head.endswith(":"):
        if FORWARD_SEPARATOR.fullmatch(head):
            low = head.lower()
            return "forward" if any(word in low for word in _FORWARD_WORDS) else "original"
    if len(head) >= 10 and not head.strip("_"):
        return "original"  # Outlook's rule, in replies as in forwards
    return None


def _skip_blank(view: _Lines, i: int, most: int) -> int:
    stop = min(view.n, i + most)
    while i < stop and not view.heads[i]:
        i += 1
    return i


def _yandex_block(view: _Lines, i: int) -> _Block | None:
    if i >= view.n:
        return None
    head = view.heads[i]
    match = _YANDEX_DATE.match(head)
    if not match or not head.endswith(":"):
        return None
    sender = _mailbox(head[match.end() : -1])
    if sender is None:
        return None
    return _Block(sender, None, head[: match.end()].rstrip(", \t"), i + 1)


def _field_block(view: _Lines, start: int, min_fields: int) -> _Block | None:
    """Header fields from ``start`` on, with wrapped values joined; needs a From with an address."""
    values: dict[str, str] = {}
    last = None
    j = start
    stop = min(view.n, start + _BLOCK_LINES)
    while j < stop:
        field = view.fields[j]
        if field is not None:
            # A repeated field is kept once, and nothing wraps onto the repeat.
            last = field[0] if field[0] not in values else None
            values.setdefault(*field)
        elif last is not None and view.heads[j] and _is_wrapped_value(view, j, last):
            values[last] = f"{values[last]} {view.heads[j]}"
        else:
            break
        j += 1
    sender = _mailbox(values.get("from", ""))
    if sender is None or len(values) < min_fields:
        return None
    subject = _one_line(values.get("subject", "")) or None
    return _Block(sender, subject, values.get("date") or None, j)


def _is_wrapped_value(view: _Lines, j: int, key: str) -> bool:
    """Whether line ``j`` continues the field above rather than starting the text.

    A long value (Outlook's "[mailto:...]", a long recipient list) wraps onto
    the next line; the text never has another field right below it.
    """
    below = view.fields[j + 1 : j + 1 + _CONTINUATION_SLACK]
    if any(field is not None for field in below):
        return True
    last_line = j + 1 >= view.n or not view.heads[j + 1]
    return last_line and key in ("to", "cc") and "@" in view.heads[j]


def _field(head: str) -> tuple[str, str] | None:
    match = _FIELD.match(head)
    if match is None:
        return None
    key = _FIELD_KEYS[" ".join(match.group(1).lower().split())]
    return key, head[match.end() :].strip(" \t*")


def _mailbox(value: str) -> Address | None:
    """'Name <a@b>', '"Name" <a@b>', 'Name [mailto:a@b]', 'a@b' -> Address; else None."""
    value = value.strip()
    mark = value.lower().find("mailto:")
    lt = value.rfind("<")
    gt = value.find(">", lt) if lt >= 0 else -1
    if mark >= 0:
        ends = [k for k in (value.find("]", mark), value.find(">", mark)) if k >= 0]
        addr = value[mark + len("mailto:") : min(ends, default=len(value))]
        name = value[:mark].rstrip(" [<")
    elif gt > lt >= 0:
        addr, name = value[lt + 1 : gt], value[:lt]
    else:
        addr, name = next((word for word in value.split() if "@" in word), ""), ""
    addr = addr.strip(" \t\"',;").lower()
    if not _ADDRESS.fullmatch(addr):
        return None
    name = _one_line(name.strip(" \t\"'*"))
    return Address(addr, "" if name.lower() == addr else name)


def _original_text(view: _Lines, start: int) -> str:
    """The lines below the header block up to the end, or up to Yandex's closing line."""
    end = view.n
    for j in range(start, view.n):
        head = view.heads[j]
        if head.startswith("--") and _END_OF_FORWARD.fullmatch(head):
            end = j
            break
    return _tidy(view.lines[start:end])


# --- text helpers --------------------------------------------------------------------


def _lines_of(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _tidy(lines: list[str]) -> str:
    """Blank lines at both ends and trailing spaces go; the rest stays as written."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return "\n".join(line.rstrip() for line in lines[start:end])


def _one_line(value: str) -> str:
    return " ".join(value.split())
