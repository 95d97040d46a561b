"""Header values as single-line text, and the Message-IDs that thread a mail."""

from __future__ import annotations

import hashlib
import re
from email.message import Message

from parsers.charset import decode_header_value

# Folding, then every control character (and the Unicode line separators) becomes a space.
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_BRACKETED = re.compile(r"<([^<>]*)>")
_WHITESPACE = re.compile(r"\s+")
# Bounds on what a mail's identifiers may cost to store and look up. Real Message-IDs are
# well under 250 characters; a longer one keeps its start and a digest of the whole, so the
# same id always bounds to the same text and threads as before. A References chain keeps
# its first id (the thread's root) and its newest ones (RFC 5322 §3.6.4 allows trimming).
MAX_ID_CHARS = 250
MAX_REFERENCES = 100


def one_line(value: str) -> str:
    """Unfold, turn CR/LF and other control characters into spaces, strip."""
    return _CONTROL.sub(" ", _FOLD.sub("", value)).strip()


def decoded_headers(message: Message, hints: tuple[str, ...] = ()) -> tuple[tuple[str, str], ...]:
    """Every top-level header in order: (lower-case name, decoded single-line value)."""
    return tuple(
        (name.strip().lower(), one_line(decode_header_value(str(value), hints)))
        for name, value in message.raw_items()
    )


def first_raw(message: Message, name: str) -> str | None:
    """The first value of a header as received (8-bit bytes kept as surrogates)."""
    return next(iter(all_raw(message, name)), None)


def all_raw(message: Message, name: str) -> list[str]:
    """Every value of a header as received; Message.get_all would turn raw
    8-bit bytes into replacement characters."""
    name = name.lower()
    return [str(value) for key, value in message.raw_items() if key.lower() == name]


def message_ids(value: str | None) -> tuple[str, ...]:
    """The <id>s of a Message-ID, In-Reply-To or References value, in order, once each.

    Junk around the brackets (comments, dates, "message from ...") is ignored;
    a value with no brackets at all falls back to its bare tokens that look like ids.
    """
    if not value:
        return ()
    found = [_WHITESPACE.sub("", inner) for inner in _BRACKETED.findall(value)]
    if not found:
        found = [token for token in value.split() if "@" in token]
    ids = tuple(dict.fromkeys(bounded_id(i.strip("<>\"'")) for i in found if i.strip("<>\"'")))
    if len(ids) > MAX_REFERENCES:
        ids = ids[:1] + ids[-(MAX_REFERENCES - 1):]
    return ids


def first_message_id(value: str | None) -> str | None:
    ids = message_ids(value)
    if ids:
        return ids[0]
    bare = (value or "").strip()
    return bounded_id(bare) if bare and " " not in bare else None


def bounded_id(text: str) -> str:
    """An identifier of at most MAX_ID_CHARS: a longer one is its start, "~" and a digest."""
    if len(text) <= MAX_ID_CHARS:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{text[: MAX_ID_CHARS - 33]}~{digest}"
