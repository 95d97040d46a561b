"""Raw bytes of one mail to an InboundMail, or a RejectedMail with a short reason.

The mail is parsed once by the standard library (compat32, which keeps raw
8-bit bytes recoverable), checked against the limits without recursion, and
then read in three ways:

* mail-parser reads the sender, recipients and date. It is given a small
  header-only message, with raw 8-bit header bytes already repaired, so its
  hardened address and date parsers run without its costly extras (Received
  hop analysis, flattening every header twice, re-encoding every attachment).
* ``parts`` walks the MIME tree for bodies and attachments. mail-parser's own
  walk does not fit here: it returns attachments re-encoded as base64 text,
  invents random names for unnamed parts (so parsing would not be
  deterministic), reads a forwarded message/rfc822 as part of the body, and
  decodes mislabelled text lossily.
* ``headers`` and ``charset`` decode every header for the record and the
  Message-IDs used for threading.
"""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime
from email.headerregistry import HeaderRegistry
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32

from mailparser import MailParser
from mailparser.exceptions import MailParserRecursionError

from parsers.charset import decode_header_value, decode_raw_header
from parsers.errors import RejectedMail
from parsers.headers import (
    all_raw,
    decoded_headers,
    first_message_id,
    first_raw,
    message_ids,
    one_line,
)
from parsers.html import html_to_text
from parsers.model import Address, InboundMail, Limits
from parsers.parts import split_parts, survey
from parsers.repair import join_stray_header_lines, normalise_newlines, strip_junk_lines
from parsers.structure import bytes_reason, depth_reason, size_reason, tree_reason

__all__ = ["RejectedMail", "parse"]

_REGISTRY = HeaderRegistry()
_STRUCTURE = re.compile(r'[<>@,;:"\\()\[\]]')
_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,80}\?[bBqQ]\?[^?\s]{0,2000}\?=")
_ENVELOPE_HEADERS = frozenset({"from", "to", "cc", "reply-to", "date"})
# mail-parser's defect categories that say something the stdlib's do not.
_ENVELOPE_DEFECTS = ("AddressHeaderDefect", "DateHeaderDefect")
_COMMENT = re.compile(r"\([^()]*\)")
_SPACES = re.compile(r"[ \t]{2,}")
# What the lenient stdlib reading may return: an addr-spec (quoted local part
# allowed) or a bare local name such as "MAILER-DAEMON".
_USABLE_ADDRESS = re.compile(
    r'(?:"[^"]*"|[^\s"<>()\[\],;:\\@]+)@[^\s"<>()\[\],;:\\@]+|[A-Za-z0-9._-]+'
)


_BOM = b"\xef\xbb\xbf"


def parse(raw: bytes, limits: Limits = Limits()) -> InboundMail:  # noqa: B008 - frozen value
    """Parse one mail; any failure, whatever its cause, is a RejectedMail."""
    try:
        return _parse(bytes(raw), limits)
    except RejectedMail:
        raise
    except (RecursionError, MailParserRecursionError):
        raise RejectedMail(depth_reason(limits)) from None
    except MemoryError:
        raise RejectedMail("out of memory while parsing") from None
    except Exception as error:  # a parser bug must quarantine the mail, not stop the daemon
        raise RejectedMail(f"unparseable: {type(error).__name__}: {error}"[:200]) from error


def _parse(raw: bytes, limits: Limits) -> InboundMail:
    message, repairs = _parsed_message(raw, limits)
    hints, defects = survey(message)
    headers = decoded_headers(message, hints)
    parts = split_parts(message, limits, hints)
    envelope = _envelope(message, hints)
    html = "\n".join(parts.html) if parts.html else None
    text = "\n".join(parts.text).lstrip("\ufeff")
    if html is not None and not text.strip():
        text = html_to_text(html)
    extra = [name for name in _ENVELOPE_DEFECTS if name in envelope.defects_categories]
    return InboundMail(
        message_id=first_message_id(first_raw(message, "message-id")),
        in_reply_to=message_ids(first_raw(message, "in-reply-to")),
        references=message_ids(first_raw(message, "references")),
        sender=_sender(envelope, message, hints),
        to=_addresses(envelope.to, message, "to", hints),
        cc=_addresses(envelope.cc, message, "cc", hints),
        reply_to=_addresses(envelope.reply_to, message, "reply-to", hints),
        subject=next((value for name, value in headers if name == "subject"), ""),
        date=envelope.date or _stdlib_date(first_raw(message, "date")),
        text=text,
        html=html,
        attachments=tuple(parts.attachments),
        headers=headers,
        defects=tuple(dict.fromkeys(repairs + defects + extra)),
        raw_size=len(raw),
    )


def _parsed_message(raw: bytes, limits: Limits) -> tuple[Message, list[str]]:
    """Refuse what is too costly from the bytes, repair, then parse and check the tree."""
    _refuse(size_reason(raw, limits))
    data = normalise_newlines(raw)
    repairs: list[str] = []
    if data.startswith(_BOM):  # a client or gateway that wrote the mail as a UTF-8 text file
        data = data[len(_BOM):]
        repairs.append("ByteOrderMarkDefect")
    headed = strip_junk_lines(data)
    if headed is None:
        raise RejectedMail("not an RFC 5322 message")
    _refuse(bytes_reason(headed, limits))
    if len(headed) != len(data):
        repairs.append("JunkBeforeHeadersDefect")
    joined = join_stray_header_lines(headed)
    if joined is not None:
        headed = joined
        repairs.append("StrayHeaderLineDefect")
    message = BytesParser(policy=compat32).parsebytes(headed)
    _refuse(tree_reason(message, limits))
    return message, repairs


def _refuse(reason: str | None) -> None:
    if reason:
        raise RejectedMail(reason)


class _EnvelopeParser(MailParser):  # type: ignore[misc]
    """mail-parser reading the address and date headers of a header-only message, and no
    more: those readings (and their defects) are made when it resets its state (the Date
    ones from 4.8 on, hence the floor in pyproject.toml); the rest of its parse walks the
    parts, builds a header view of each and a dict of every header, which for this one
    empty part only doubles the work and reads nothing we use."""

    def parse(self) -> _EnvelopeParser:
        self._reset()
        return self


def _envelope(message: Message, hints: tuple[str, ...]) -> MailParser:
    """mail-parser over the first address and date headers only, as Unicode text."""
    view = Message()
    for name, value in message.raw_items():
        if name.lower() in _ENVELOPE_HEADERS and name not in view:
            view[name] = decode_raw_header(str(value), hints)
    view.set_payload("")
    try:
        return _EnvelopeParser(view)
    except Exception:  # noqa: BLE001 - mail-parser lets a broken encoded word escape
        return _EnvelopeParser(_without_encoded_structure(view, hints))


def _without_encoded_structure(view: Message, hints: tuple[str, ...]) -> Message:
    """The same headers with each encoded word decoded by our lenient decoder and stripped of
    the characters that could change an address list's structure, so they stay names."""
    def plain(word: re.Match[str]) -> str:
        return _STRUCTURE.sub(" ", decode_header_value(word.group(0), hints))

    fixed = Message()
    for name, value in view.items():
        fixed[name] = _ENCODED_WORD.sub(plain, str(value))
    fixed.set_payload("")
    return fixed


def _sender(envelope: MailParser, message: Message, hints: tuple[str, ...]) -> Address | None:
    """The first mailbox of the first From header that has one."""
    found = _addresses(envelope.from_, message, "from", hints)
    if not found:
        for value in all_raw(message, "from")[1:]:
            found = _stdlib_addresses(value, hints)
            if found:
                break
    return found[0] if found else None


def _addresses(
    pairs: list[tuple[str, str]], message: Message, header: str, hints: tuple[str, ...]
) -> tuple[Address, ...]:
    found = tuple(
        Address(addr.strip().lower(), _display_name(name, hints))
        for name, addr in pairs
        if addr.strip()
    )
    written = _ENCODED_WORD.sub(" ", decode_raw_header(first_raw(message, header) or "", hints))
    written = written.lower()  # once: a header may list thousands of addresses
    if any(a.addr not in written for a in found):
        # mail-parser decodes encoded words before it splits the list, so an encoded
        # display name such as "=?us-ascii?q?a:victim@evil.example;?=" can turn into an
        # address. An address that is not written in the header itself came from such a
        # word: read the header by its structure instead, where encoded words stay names.
        found = _structural_addresses(first_raw(message, header), hints)
    if not found:  # mail-parser refuses what mail clients accept: "MAILER-DAEMON", "a@b.c."
        found = _stdlib_addresses(first_raw(message, header) or "", hints)
    return found


def _structural_addresses(value: str | None, hints: tuple[str, ...]) -> tuple[Address, ...]:
    """The mailboxes of an address header parsed by its structure, where encoded words can
    only ever be names; empty when the structural parser reads no usable address."""
    if not value:
        return ()
    try:
        header = _REGISTRY("to", one_line(decode_raw_header(value, hints)))
        pairs = [(a.display_name, a.addr_spec) for a in header.addresses]
    except Exception:  # noqa: BLE001 - a header the strict parser chokes on: no opinion
        return ()
    return tuple(Address(addr.lower(), one_line(name)) for name, addr in pairs
                 if _USABLE_ADDRESS.fullmatch(addr))


def _stdlib_addresses(value: str, hints: tuple[str, ...]) -> tuple[Address, ...]:
    value = decode_raw_header(value, hints)
    found = []
    for name, addr in email.utils.getaddresses([value]):
        addr = addr.strip()
        if " " in addr and not addr.startswith('"'):  # "Test test@example.com"
            addr = addr.rsplit(" ", 1)[-1]
        if _USABLE_ADDRESS.fullmatch(addr) and ("@" in addr or _is_bare_local(value, addr)):
            found.append(Address(addr.lower(), _display_name(name, hints)))
    return tuple(found)


def _is_bare_local(value: str, local: str) -> bool:
    """ "MAILER-DAEMON (Mail Delivery System)" is a mailbox; "[broken]" is not."""
    bare = _COMMENT.sub("", value).strip()
    return bare == local or bare.endswith(f"<{local}>")


def _display_name(name: str, hints: tuple[str, ...]) -> str:
    # mail-parser leaves encoded words it cannot decode (quoted ones, odd charsets).
    name = one_line(decode_header_value(name, hints) if "=?" in name else name)
    # A comment is not part of the name: "MAILER-DAEMON (Mail Delivery System)".
    bare = _COMMENT.sub("", name).strip()
    return _SPACES.sub(" ", bare) if bare and bare != name else name


def _stdlib_date(value: str | None) -> datetime | None:
    """The lenient stdlib reading for dates mail-parser's strict grammar refuses."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(one_line(decode_raw_header(value)))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # "-0000": zone unknown, read as UTC
    return parsed.astimezone(UTC)
