"""What a mail we composed says, read back from its bytes: the ticket keeps it (`ticketd show`).

Read from the very bytes the outbox sends, not from the values they were made of, so the
record is what the receiver got. The composers hand the same reading, taken from the parts
they built (``responders.mime.shown``, tested equal to this one), so that queueing a mail
does not parse it again; `subject_text` and `body_text` are the steps both share. Our mail
is simple (responders.mime): a text/plain part, alone or first in an alternative or mixed
container.
"""

from __future__ import annotations

from email import message_from_bytes
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32


def sent_text(raw: bytes) -> tuple[str, str]:
    """(subject, text of the first text/plain part) of a mail, line ends as "\\n"."""
    msg = message_from_bytes(raw, policy=compat32)  # compat32: no header registry, fast
    return _subject(msg), _plain(msg)


def _subject(msg: Message) -> str:
    return subject_text(msg.get("Subject"))


def subject_text(value: str | None) -> str:
    """A Subject header value as `sent_text` reads it (for a caller holding the value)."""
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value)))).replace("\r\n", "").replace("\n", "")
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return str(value)  # never a reason to fail the transaction that queues the mail


def _plain(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and not part.get_filename():
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                return ""
            return body_text(payload, part.get_content_charset() or "utf-8")
    return ""


def body_text(payload: bytes, charset: str = "utf-8") -> str:
    """A text part's decoded bytes as `sent_text` gives them: line ends as "\\n"."""
    try:
        text = payload.decode(charset, errors="replace")
    except LookupError:
        text = payload.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")
