"""Splitting a parsed message into body text, HTML and attachments.

The walk is iterative and keeps the document order. A text/plain or
text/html leaf without a filename and not marked as an attachment is body;
every other leaf is an attachment with its exact decoded bytes; a message/*
part (a forwarded mail, a bounce report) is one attachment as a whole.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import Parser
from email.policy import Compat32, compat32

from parsers.charset import decode_bytes, decode_header_value, decode_param, decode_raw_header
from parsers.errors import RejectedMail
from parsers.filenames import extension_for, safe_filename
from parsers.headers import bounded_id, first_raw, one_line
from parsers.model import Attachment, Limits
from parsers.structure import tree_reason

_BODY_TYPES = ("text/plain", "text/html")
_UUENCODE = ("x-uuencode", "uuencode", "uue", "x-uue")
_MAX_DESCRIPTION = 100  # a longer Content-Description is prose, not a name
_FILE_LIKE = re.compile(r"[\w\- ]+\.[A-Za-z0-9]{2,5}")
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_NOT_BASE64 = bytes(b for b in range(256) if b not in _BASE64_ALPHABET)


class _Verbatim(Compat32):
    """Write headers back as they were received: no refolding, no added space."""

    def fold_binary(self, name: str, value: str) -> bytes:  # type: ignore[override]
        line = f"{name}: {value}" if value else f"{name}:"
        return (line.replace("\n", self.linesep) + self.linesep).encode("utf-8", "surrogateescape")


# A message/* part becomes a file of its own, so it is written in its
# canonical form (RFC 5322: CRLF), whatever line ending the input had.
_VERBATIM = _Verbatim(linesep="\r\n")


@dataclass
class Parts:
    text: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    hints: tuple[str, ...] = ()  # every charset the mail declares, for unlabelled bytes


def survey(message: Message) -> tuple[tuple[str, ...], list[str]]:
    """Every declared charset (once each) and every defect name, forwarded mails
    included; message.walk() recurses, but the tree is already bounded."""
    charsets: dict[str, None] = {}
    defects = []
    for part in message.walk():
        defects.extend(type(defect).__name__ for defect in part.defects)
        charset = part.get_content_charset()
        if charset:
            charsets[charset] = None
    return tuple(charsets), defects


def split_parts(message: Message, limits: Limits, hints: tuple[str, ...] = ()) -> Parts:
    """Walk the tree (already checked for depth) in order without recursion."""
    found = Parts(hints=hints)
    stack = [message]
    while stack:
        part = stack.pop()
        if part.is_multipart() and part.get_content_maintype() != "message":
            children = [p for p in part.get_payload() if isinstance(p, Message)]
            stack.extend(reversed(children + _epilogue_parts(part, limits)))
        elif _is_body(part, hints):
            _add_body(found, part)
        else:
            _add_attachment(found, part, limits)
    return found


def _epilogue_parts(part: Message, limits: Limits) -> list[Message]:
    """Parts after the closing boundary, where a mailer that reused its boundary
    for a nested multipart left them; mail clients show them, so does mail-parser."""
    epilogue, boundary = part.epilogue, part.get_boundary()
    if not epilogue or not boundary or f"--{boundary}" not in epilogue:
        return []
    recovered = []
    for piece in ("\n" + epilogue).split(f"\n--{boundary}")[1:]:
        line_end = piece.find("\n")
        if piece.startswith("--") or line_end < 0:  # the closing delimiter
            break
        message = Parser(policy=compat32).parsestr(piece[line_end + 1 :])
        if tree_reason(message, limits) is None:
            recovered.append(message)
    return recovered


def _is_body(part: Message, hints: tuple[str, ...]) -> bool:
    # A multipart whose boundary never appears arrives as one text payload.
    content_type = part.get_content_type()
    return (
        (content_type in _BODY_TYPES or part.get_content_maintype() == "multipart")
        and part.get_content_disposition() != "attachment"
        and not _declared_filename(part, hints)
    )


def _add_body(found: Parts, part: Message) -> None:
    text = decode_bytes(transfer_decoded(part), part.get_content_charset(), found.hints)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text:  # an empty part would only add a blank line when parts are joined
        return
    (found.html if part.get_content_subtype() == "html" else found.text).append(text)


# attachments.content_type is String(255); RFC 6838 names stay far below (127 + 1 + 127).
MAX_CONTENT_TYPE = 255


def _add_attachment(found: Parts, part: Message, limits: Limits) -> None:
    if len(found.attachments) >= limits.max_attachments:
        raise RejectedMail(f"more than {limits.max_attachments} attachments")
    content_type = part.get_content_type()
    if len(content_type) > MAX_CONTENT_TYPE:  # a sender's invention, and too long to store
        content_type = "application/octet-stream"
    index = len(found.attachments) + 1
    name = safe_filename(_attachment_name(part, content_type, found.hints), content_type, index)
    _check_size(name, _encoded_size(part), limits)
    payload = (
        _message_bytes(part) if part.get_content_maintype() == "message" else transfer_decoded(part)
    )
    _check_size(name, len(payload), limits)
    content_id = _content_id(part)
    disposition = part.get_content_disposition()
    inline = disposition == "inline" or (disposition is None and content_id is not None)
    found.attachments.append(Attachment(name, content_type, payload, inline, content_id))


def _check_size(name: str, size: int, limits: Limits) -> None:
    if size > limits.max_attachment_bytes:
        megabytes = size / (1024 * 1024)
        raise RejectedMail(f"attachment too large: {name} {megabytes:.0f} MB")


def _encoded_size(part: Message) -> int:
    """Upper estimate of the decoded size, known before decoding anything."""
    payload = part._payload  # noqa: SLF001 - get_payload() would decode 8-bit text first
    if not isinstance(payload, str):
        return 0
    if _transfer_encoding(part) == "base64":
        return len(payload) * 3 // 4
    return len(payload)


def transfer_decoded(part: Message) -> bytes:
    """The part's bytes with its Content-Transfer-Encoding undone, leniently."""
    cte = _transfer_encoding(part)
    if cte == "base64":
        return _base64(_encoded_bytes(part))
    if cte == "quoted-printable":
        # A hard line break in quoted-printable stands for CRLF (RFC 2045 6.7);
        # the LF-normalised input must not turn a PDF's CRLFs into LFs.
        return binascii.a2b_qp(_encoded_bytes(part).replace(b"\n", b"\r\n"))
    if cte in _UUENCODE:
        data = part.get_payload(decode=True)  # the stdlib owns uudecode
        return data if isinstance(data, bytes) else b""
    return _encoded_bytes(part)


def _encoded_bytes(part: Message) -> bytes:
    # get_payload() would decode raw 8-bit bytes with the declared charset,
    # replacing what does not fit; the stored text keeps them as surrogates.
    payload = part._payload  # noqa: SLF001
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return payload if isinstance(payload, bytes) else b""


def _base64(data: bytes) -> bytes:
    """Decode as mail clients do: skip junk, stop at padding, drop a dangling character."""
    data = data.translate(None, _NOT_BASE64)
    try:
        return binascii.a2b_base64(data)
    except (binascii.Error, ValueError):
        data = data.split(b"=", 1)[0]
        data = data[: len(data) - 1] if len(data) % 4 == 1 else data
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def _transfer_encoding(part: Message) -> str:
    return one_line(str(part.get("content-transfer-encoding", ""))).lower()


def _message_bytes(part: Message) -> bytes:
    """A forwarded mail or a report as a file: the inner message(s) written back.

    The parser keeps no byte offsets, so this is regenerated with the headers
    as received: it matches the original except for line endings (CRLF) and
    the space after a header's colon.
    """
    payload = part.get_payload()
    if not isinstance(payload, list):
        return transfer_decoded(part)
    data = b"".join(_flatten(inner) for inner in payload if isinstance(inner, Message))
    # Each report block is written with a closing blank line the last one lacked.
    return data[:-2] if len(payload) > 1 and data.endswith(b"\r\n\r\n") else data


def _flatten(message: Message) -> bytes:
    try:
        data = message.as_bytes(policy=_VERBATIM)
    except (LookupError, UnicodeError, ValueError, TypeError):
        return b""
    # Without headers there was no blank line to write back either.
    return data[2:] if not message.keys() and data.startswith(b"\r\n") else data


def _attachment_name(part: Message, content_type: str, hints: tuple[str, ...]) -> str | None:
    """The sender's filename; else a forwarded subject or a description, as mail clients show."""
    declared = _declared_filename(part, hints)
    if declared:
        return declared
    label = _inner_subject(part, hints) if content_type == "message/rfc822" else ""
    if not label:
        label = one_line(decode_header_value(first_raw(part, "content-description") or "", hints))
    if not label:
        # Outlook names pasted images only in their Content-ID: "image001.png@01D4...".
        local = (_content_id(part) or "").split("@", 1)[0]
        label = local if _FILE_LIKE.fullmatch(local) else ""
    if not label or len(label) > _MAX_DESCRIPTION:
        return None
    extension = extension_for(content_type)
    return label if label.lower().endswith(extension) else label + extension


def _inner_subject(part: Message, hints: tuple[str, ...]) -> str:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return one_line(decode_header_value(first_raw(payload[0], "subject") or "", hints))
    return ""


def _declared_filename(part: Message, hints: tuple[str, ...]) -> str | None:
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        value = decode_param(_raw_param(part, header, param, hints), hints)
        if value and value.strip():
            return value  # safe_filename drops control characters rather than spacing them
    return None


def _raw_param(
    part: Message, header: str, param: str, hints: tuple[str, ...]
) -> str | tuple | None:
    """A parameter without the stdlib's lossy handling of raw 8-bit header bytes."""
    raw = first_raw(part, header)
    if raw is None:
        return None
    repaired = decode_raw_header(raw, hints)
    if repaired != raw:
        view = Message()
        view[header] = repaired
        part = view
    try:
        return part.get_param(param, header=header)
    except (ValueError, LookupError, UnicodeError, IndexError):
        return None


def _content_id(part: Message) -> str | None:
    value = first_raw(part, "content-id")
    if value is None:
        return None
    cid = one_line(decode_header_value(value)).strip("<> ")
    return bounded_id(cid) if cid else None
