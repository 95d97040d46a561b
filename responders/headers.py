"""Header values safe to write: one line of text, exactly one recipient, encoded names.

Nothing from an incoming mail reaches an outgoing header without clean_header_text
(DESIGN invariant 8). Python 3.11.7 carries CVE-2024-6923: a parsed header whose
encoded words hold CR or LF is re-emitted with real line breaks, i.e. new headers.
So every value is cleaned, encoded and folded by ``responders.encoding``, checked
once more, and stored with ``set_raw`` so that the stdlib does not refold it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.message import EmailMessage
from typing import NamedTuple

from responders.addresses import addr_spec
from responders.encoding import MAX_LINE, encode_phrase, encode_text, fold

__all__ = [
    "Folded",
    "UnsafeRecipient",
    "clean_header_text",
    "folded",
    "format_address",
    "message_id_token",
    "put_folded",
    "put_header",
    "set_address_header",
    "set_text_header",
    "single_recipient",
    "text_header",
]


class UnsafeRecipient(ValueError):
    """An address we will not write to: not exactly one strictly valid mailbox."""


# C0, DEL, C1 (with U+0085), the Unicode line and paragraph separators, and the
# bidirectional overrides that make a displayed name read differently from its bytes.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")  # undecodable bytes kept by surrogateescape
_NAME_LEN = 100


def clean_header_text(value: object, max_len: int = 200) -> str:
    """One line of printable text: controls become spaces, whitespace collapses, long is cut.

    ``str()`` first: a parsed header object is exactly what CVE-2024-6923 re-emits raw.
    """
    text = _SURROGATE.sub("\ufffd", str(value))
    text = " ".join(_INVISIBLE.sub(" ", text).split())
    if len(text) > max_len:
        text = text[: max(max_len - 1, 0)].rstrip() + "…"
    return text


# --- one recipient -------------------------------------------------------------------

_STOP = frozenset('"()<>,;:')
# A display-name word: an atom, obs-phrase dots, UTF-8 (RFC 6532) or an encoded word.
_DISPLAY_WORD = re.compile(r'[^\s"(),:;<>@\[\]\\]+')
_FOLDING = re.compile(r"\r?\n(?=[ \t])")
_Token = tuple[str, str]


def single_recipient(value: str) -> str | None:
    """The addr-spec of a header value naming exactly one mailbox, else None.

    A small tokenizer of its own instead of ``email.utils.parseaddr``, which on this
    Python (CVE-2023-27043) reads ``alice@example.org)<bob@example.org>`` as bob and
    lets ambiguous values through. Anything unbalanced, a second address, a group,
    or an unquoted "@" in the display name gives None.
    """
    if not isinstance(value, str) or len(value) > 2000:
        return None
    tokens = _tokens(_FOLDING.sub("", value))
    if not tokens:
        return None
    angles = [text for kind, text in tokens if kind == "angle"]
    if len(angles) == 1 and tokens[-1][0] == "angle":
        display = tokens[:-1]
        if all(kind == "quoted" or _DISPLAY_WORD.fullmatch(text) for kind, text in display):
            return addr_spec(angles[0])
        return None
    if len(tokens) == 1 and tokens[0][0] == "word":
        return addr_spec(tokens[0][1])
    return None


def _tokens(text: str) -> list[_Token] | None:
    """Words, quoted strings and <...> of a mailbox, comments dropped; None when malformed."""
    tokens: list[_Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
            continue
        if char in _READERS:
            read = _READERS[char](text, index)
        elif char in _STOP:  # ")" ">" "," ";" ":" out of place: unbalanced, a list or a group
            return None
        else:
            read = _word(text, index)
        if read is None:
            return None
        token, index = read
        if token[0] != "comment":
            tokens.append(token)
    return tokens


def _word(text: str, start: int) -> tuple[_Token, int]:
    end = start
    while end < len(text) and not text[end].isspace() and text[end] not in _STOP:
        end += 1
    return ("word", text[start:end]), end


def _quoted(text: str, start: int) -> tuple[_Token, int] | None:
    chars: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return ("quoted", "".join(chars)), index + 1
        if char == "\\":
            index += 1
            if index == len(text):
                return None
            char = text[index]
        chars.append(char)
        index += 1
    return None


def _comment(text: str, start: int) -> tuple[_Token, int] | None:
    depth = 0
    index = start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return ("comment", ""), index + 1
        index += 1
    return None


def _angle(text: str, start: int) -> tuple[_Token, int] | None:
    end = text.find(">", start + 1)
    inner = text[start + 1 : end]
    if end < 0 or any(char in '<"()' or char.isspace() for char in inner):
        return None
    return ("angle", inner), end + 1


_READERS = {'"': _quoted, "(": _comment, "<": _angle}


# --- writing headers ------------------------------------------------------------------

def format_address(name: str, addr: str) -> str:
    """``name <addr>`` as a header value, the name RFC 2047-encoded when it is not ASCII.

    The address must be one valid mailbox (UnsafeRecipient otherwise); it has to fit
    on one folded line, since the stdlib would otherwise refold the header itself.
    """
    spec = single_recipient(addr)
    if spec is None:
        raise UnsafeRecipient("not exactly one valid mail address")
    if len(spec) + 3 > MAX_LINE:
        raise UnsafeRecipient("mail address too long for one header line")
    phrase = encode_phrase(clean_header_text(name, _NAME_LEN))
    return f"{phrase} <{spec}>" if phrase else spec


_MSG_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\[\]:-]+")


def message_id_token(value: str) -> str | None:
    """``<id>`` for a Message-ID from a mail, or None when it is not one we can write."""
    text = clean_header_text(value, 998)
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    # One id per line at most: a longer one would make the stdlib re-encode it.
    if not _MSG_ID.fullmatch(text) or len(text) + 3 > MAX_LINE:
        return None
    return f"<{text}>"


_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_WIRE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")


class Folded(NamedTuple):
    """A header as ``put_header`` stores it: made only by ``folded`` (or ``text_header``),
    which check and fold the value; ``put_folded`` stores it as it is."""

    name: str
    value: str  # what follows "Name: ", continuation lines joined by CRLF and a space


def folded(name: str, value: str) -> Folded:
    """``value`` checked (printable ASCII, one line) and folded by us: refused otherwise.

    The error names the header but not the value, which may hold personal data.
    """
    if not _HEADER_NAME.fullmatch(name) or not _WIRE.fullmatch(value):
        raise ValueError(f"refusing header {name}: not one line of printable ASCII")
    text = fold(name, value)
    lines = text.split("\r\n ")
    widths = [len(name) + 2 + len(lines[0])] + [len(line) + 1 for line in lines[1:]]
    if max(widths) > MAX_LINE:
        raise ValueError(f"refusing header {name}: a token longer than a line")
    return Folded(name, text)


def put_header(msg: EmailMessage, name: str, value: str) -> None:
    """Store an encoded value: printable ASCII only, folded by us, never twice the same name."""
    put_folded(msg, (folded(name, value),))


def put_folded(msg: EmailMessage, headers: Iterable[Folded]) -> None:
    """Store headers made by ``folded``, in order, never twice the same name: for a composer
    that folds what depends only on the settings once, not once per mail."""
    names = {name.lower() for name in msg.keys()}
    for name, value in headers:
        key = name.lower()
        if key in names:
            raise ValueError(f"refusing header {name}: already set")
        names.add(key)
        msg.set_raw(name, value)


def text_header(name: str, text: str, max_len: int = 200) -> Folded:
    """An unstructured header (a subject) of any text: cleaned, encoded and folded."""
    return folded(name, encode_text(clean_header_text(text, max_len)))


def set_text_header(msg: EmailMessage, name: str, text: str, max_len: int = 200) -> None:
    put_folded(msg, (text_header(name, text, max_len),))


def set_address_header(msg: EmailMessage, name: str, display_name: str, addr: str) -> None:
    put_header(msg, name, format_address(display_name, addr))
