"""MIME bodies and wire bytes for the mail we compose, without the stdlib's content manager.

``EmailMessage.set_content`` / ``add_alternative`` / ``add_attachment`` and the Generator
parse every header they touch through the header registry (which builds a class per
header) and were most of the cost of an acknowledgement. Our headers are already
encoded and folded by ``responders.headers``; here the bodies are built the same way:
every value is written by us and stored with ``set_raw``, and ``wire_bytes`` writes the
tree out without parsing anything. The result is still an ``EmailMessage``, which the
stdlib can serialize and read back unchanged (the tests do).

Bodies are UTF-8 quoted-printable (7-bit: no 8BITMIME needed, still readable), files are
base64. A boundary starts with "=_", which neither encoding can produce (RFC 2045 §6.7
allows "=" only before two hex digits or a line end, and "_" is not base64), so no
body can contain it.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import unicodedata
from collections.abc import Sequence
from email.message import EmailMessage, Message
from email.policy import SMTP
from typing import NamedTuple
from urllib.parse import quote

from parsers.outgoing import body_text, sent_text, subject_text

__all__ = [
    "File",
    "header_text",
    "header_value",
    "message_id",
    "quoted_printable",
    "set_body",
    "shown",
    "wire_bytes",
]

_QP_LINE = 76  # RFC 2045 §6.7 (5): encoded lines, the soft break's "=" included
_HEADER_LINE = 78  # RFC 5322 §2.1.1, and what the stdlib keeps as it is
# Types a file may travel under; multipart/* and message/* would need a structure.
_LEAF_TYPE = re.compile(
    r"(text|image|audio|video|application|font|model)/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
)
_OCTETS = "application/octet-stream"


class File(NamedTuple):
    filename: str  # already sanitised by the caller; made safe for the header here
    content_type: str  # one we cannot vouch for travels as application/octet-stream
    payload: bytes


# --- bodies ------------------------------------------------------------------------------

def set_body(
    msg: EmailMessage, text: str, html: str | None = None, files: Sequence[File] = ()
) -> None:
    """The body of ``msg``: text, with an HTML alternative and files when given.

    The structure is what MUAs send: text/plain alone; multipart/alternative of text
    and HTML; either inside multipart/mixed, first, when there are files.
    """
    if "Content-Type" in msg:
        raise ValueError("the message already has a body")
    if html is None and not files:  # text alone: no part to build and copy
        msg.set_raw("MIME-Version", "1.0")
        _set_text(msg, "plain", text)
        return
    body = _text_part("plain", text)
    if html is not None:
        body = _multipart("alternative", [body, _text_part("html", html)])
    if files:
        body = _multipart("mixed", [body, *map(_file_part, files)])
    msg.set_raw("MIME-Version", "1.0")
    for name, value in body.raw_items():
        msg.set_raw(name, value)
    msg.set_payload(body._payload)  # a str, or the list of parts


def _part() -> EmailMessage:
    return EmailMessage(policy=SMTP)


_TEXT_TYPE = 'text/{}; charset="utf-8"'


def _text_part(subtype: str, text: str) -> EmailMessage:
    part = _part()
    _set_text(part, subtype, text)
    return part


def _set_text(part: EmailMessage, subtype: str, text: str) -> None:
    part.set_raw("Content-Type", _TEXT_TYPE.format(subtype))
    part.set_raw("Content-Transfer-Encoding", "quoted-printable")
    part.set_payload(quoted_printable(text))


def _multipart(subtype: str, parts: list[EmailMessage]) -> EmailMessage:
    container = _part()
    boundary = "=_" + secrets.token_hex(16)  # random: one per container, none in a body
    container.set_raw("Content-Type", f'multipart/{subtype};\r\n boundary="{boundary}"')
    container.set_payload(parts)
    return container


def _file_part(file: File) -> EmailMessage:
    content_type = file.content_type.lower()
    if not _LEAF_TYPE.fullmatch(content_type):
        content_type = _OCTETS
    part = _part()
    fallback = [_quoted("name", _ascii_name(file.filename))]
    part.set_raw("Content-Type", _params("Content-Type", content_type, fallback))
    part.set_raw("Content-Transfer-Encoding", "base64")
    disposition = _params("Content-Disposition", "attachment", _filename_params(file.filename))
    part.set_raw("Content-Disposition", disposition)
    part.set_payload(base64.encodebytes(file.payload).decode("ascii").replace("\n", "\r\n"))
    return part


# --- quoted-printable --------------------------------------------------------------------

_SURROGATES = re.compile("[\ud800-\udfff]")


def quoted_printable(text: str) -> str:
    """``text`` as UTF-8 quoted-printable with CRLF line ends; decodes to exactly ``text``
    with its line ends (CRLF, CR or LF) as LF.

    ``binascii.b2a_qp`` does the encoding (in C: it also protects trailing whitespace
    and a lone "."); lines it makes too long and lines that begin with "From ", which
    an mbox on the way would turn into ">From ", are mended after it. A text without a
    final line end gets a soft line break, so the body still ends with CRLF.
    """
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes kept by surrogateescape
        data = _SURROGATES.sub("\ufffd", text).encode("utf-8")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False).decode("ascii")
    if not text.endswith("\n"):
        encoded += "=\n"
    lines = encoded[:-1].split("\n")
    if "From " in encoded or max(map(len, lines)) > _QP_LINE:
        encoded = "\n".join(map(_mend, lines)) + "\n"
    return encoded.replace("\n", "\r\n")


def _mend(line: str) -> str:
    """One encoded line as lines of at most 76 that do not begin with "From "."""
    lines = []
    while True:
        if line.startswith("From "):
            line = "=46" + line[1:]
        if len(line) <= _QP_LINE:
            lines.append(line)
            return "\n".join(lines)
        cut = _cut(line, _QP_LINE - 1)
        if line[cut:] == ".":  # a lone dot would end the SMTP DATA without dot-stuffing
            cut = _cut(line, cut - 1)
        lines.append(line[:cut] + "=")
        line = line[cut:]


def _cut(line: str, at: int) -> int:
    """``at``, or earlier so as not to split an "=XX" escape."""
    escape = line.rfind("=", at - 2, at)
    return escape if escape >= 0 else at


# --- parameters (RFC 2045 §5.1, RFC 2231) ------------------------------------------------

# A file name written as a quoted string as it is: short, and nothing a reader might decode
# ("%" for RFC 2231, "=?" for RFC 2047) or unquote differently ('"', "\").
_PLAIN_CHARS = r"A-Za-z0-9 !#$&'()+,.\-\[\]^_`{}~@"
_PLAIN_NAME = re.compile(f"[{_PLAIN_CHARS}]{{1,60}}")
_NOT_PLAIN = re.compile(f"[^{_PLAIN_CHARS}]+")
_ATTR_CHARS = "!#$&+-.^_`|~"  # RFC 2231 attribute-char besides letters and digits
_SEGMENT = 54  # encoded characters per continuation: " filename*NN*=utf-8''" + 54 + ";" < 78


def _quoted(attribute: str, value: str) -> str:
    return f'{attribute}="{value}"'


def _filename_params(name: str) -> list[str]:
    """``filename="..."`` when plain and short, else RFC 2231 UTF-8, cut into continuations.

    The plain ASCII fallback goes to Content-Type's ``name``, not here: readers take
    the first ``filename`` they meet (the stdlib does), and it must be the real one.
    """
    if _PLAIN_NAME.fullmatch(name):
        return [_quoted("filename", name)]
    segments = _segments(name)
    if len(segments) == 1:
        return [f"filename*=utf-8''{segments[0]}"]
    first, *rest = segments
    return [f"filename*0*=utf-8''{first}"] + [
        f"filename*{number}*={segment}" for number, segment in enumerate(rest, 1)
    ]


def _segments(name: str) -> list[str]:
    """``name`` percent-encoded in pieces of at most _SEGMENT, cut between characters:
    some readers decode each continuation on its own."""
    segments = [""]
    for char in name:
        encoded = quote(char, safe=_ATTR_CHARS, encoding="utf-8", errors="replace")
        if len(segments[-1]) + len(encoded) > _SEGMENT:
            segments.append("")
        segments[-1] += encoded
    return segments


def _ascii_name(name: str) -> str:
    """The file name for readers without RFC 2231: accents dropped, other letters "_"."""
    letters = "".join(
        char for char in unicodedata.normalize("NFKD", name) if not unicodedata.combining(char)
    )
    stem, dot, extension = _NOT_PLAIN.sub("_", letters).rpartition(".")
    if not dot:
        stem, extension = extension, ""
    stem = re.sub("_+", "_", stem).strip(" _.") or "attachment"
    extension = extension.strip(" _")[:10]
    if not extension:
        return stem[:60]
    return f"{stem[: 59 - len(extension)]}.{extension}"


def _params(header: str, value: str, params: list[str]) -> str:
    """``value; a=b; c=d``, folded one parameter per line when it does not fit on one."""
    one_line = "; ".join([value, *params])
    if len(header) + 2 + len(one_line) <= _HEADER_LINE:
        return one_line
    return ";\r\n ".join([value, *params])


# --- wire bytes --------------------------------------------------------------------------

# One header as put_header and this module write it: a name of printable ASCII but ":",
# a value of printable ASCII with continuation lines joined by CRLF and whitespace (never
# a line of whitespace only). Anything else is refused, not repaired.
_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_FOLDED = re.compile(r"[\t\x20-\x7e]*(?:\r\n[ \t]+[\x21-\x7e][\t\x20-\x7e]*)*")
_BOUNDARY = re.compile(r'boundary="([^"]+)"')
_EOL = re.compile(r"\r\n|\r|\n")


def wire_bytes(msg: Message) -> bytes:
    """``msg`` as it goes to SMTP: 7-bit, CRLF line ends, headers exactly as stored.

    Every header must have been stored raw (``put_header`` or this module); a header
    set any other way is refused rather than parsed.
    """
    chunks: list[str] = []
    _write(msg, chunks)
    return "".join(chunks).encode("ascii")


def _write(part: Message, chunks: list[str]) -> None:
    boundary = None
    for name, value in part.raw_items():
        # type(), not isinstance(): the registry's header objects are str subclasses.
        if not _NAME.fullmatch(name) or type(value) is not str or not _FOLDED.fullmatch(value):
            raise ValueError(f"header {name} was not stored as folded ASCII text")
        if name.lower() == "content-type" and value.startswith("multipart/"):
            found = _BOUNDARY.search(value)
            boundary = found.group(1) if found else None
        chunks.append(f"{name}: {value}\r\n")
    chunks.append("\r\n")
    # _payload, not get_payload(): that parses Content-Transfer-Encoding with the registry.
    payload = part._payload
    if isinstance(payload, list):
        if boundary is None:
            raise ValueError("a multipart part without our boundary")
        for sub in payload:
            chunks.append(f"--{boundary}\r\n")
            _write(sub, chunks)
            chunks.append("\r\n")
        chunks.append(f"--{boundary}--\r\n")
    elif payload:
        crlf = payload.count("\r\n")
        if payload.count("\r") != crlf or payload.count("\n") != crlf:  # set by someone else
            payload = _EOL.sub("\r\n", payload)
        chunks.append(payload)


# --- reading our own headers back --------------------------------------------------------

_UNFOLD = re.compile(r"\r\n(?=[ \t])")
_OUR_WORD = re.compile(r"=\?utf-8\?b\?([A-Za-z0-9+/]*={0,2})\?=")


def header_value(msg: Message, name: str) -> str | None:
    """The value of the first ``name`` header as stored, unfolded; None when there is none."""
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            return _UNFOLD.sub("", str(value))
    return None


def message_id(msg: Message) -> str:
    """The Message-ID without its angle brackets."""
    value = header_value(msg, "Message-ID")
    if not value:
        raise ValueError("the message has no Message-ID")
    return value.strip()[1:-1]


def header_text(msg: Message, name: str) -> str | None:
    """An unstructured header (a subject) as text, read the way RFC 2047 §6.2 says.

    Our values (``responders.encoding.encode_text``) are plain words and UTF-8 "B"
    encoded words; anything else is left to the stdlib's header registry.
    """
    value = header_value(msg, name)
    if value is None:
        return None
    if "=?" not in value:
        return value
    words: list[str] = []
    previous_encoded = False
    for token in value.split(" "):
        found = _OUR_WORD.fullmatch(token)
        if not token or (found is None and "=?" in token):
            return str(msg[name])
        text = base64.b64decode(found.group(1)).decode("utf-8") if found else token
        if words and not (found and previous_encoded):
            words.append(" ")
        words.append(text)
        previous_encoded = found is not None
    return "".join(words)


# --- what the mail shows, for the ticket's record ---------------------------------------

def shown(msg: Message) -> tuple[str, str]:
    """(subject, text of the first text/plain part) of a mail composed here: exactly what
    ``parsers.outgoing.sent_text`` reads from its wire bytes, taken from the parts we built
    instead of parsing those bytes again (the outbox records it on the ticket).

    A mail whose parts were not written by ``set_body`` is read from its bytes.
    """
    # As stored, folded: the very value the parser would read back from the bytes.
    value = next((str(v) for k, v in msg.raw_items() if k.lower() == "subject"), None)
    if value is not None and value.isascii() and "=?" not in value:
        # No encoded word: the stdlib's decoding gives the value back as it is, unfolded.
        subject = value.replace("\r\n", "").replace("\n", "")
    else:
        subject = subject_text(value)
    for part in _leaves(msg):
        kind = header_value(part, "Content-Type") or ""
        if not kind.startswith("text/plain") or "Content-Disposition" in part:
            continue
        if kind != _TEXT_TYPE.format("plain") or header_value(
                part, "Content-Transfer-Encoding") != "quoted-printable":
            break  # not ours: leave it to the parser
        return subject, body_text(binascii.a2b_qp(part._payload.encode("ascii")))
    return sent_text(wire_bytes(msg))


def _leaves(part: Message) -> list[Message]:
    payload = part._payload
    if not isinstance(payload, list):
        return [part]
    return [leaf for sub in payload for leaf in _leaves(sub)]
