"""What a bounce says: which recipients failed, for good or for now, and of which mail.

Read in order of trust:

1. the RFC 3464 ``message/delivery-status`` part (Original-Recipient before
   Final-Recipient, as Mailman's flufl.bounce does; Action ``failed`` is
   permanent, ``delayed`` temporary; without an Action the Status class
   decides);
2. Exim's ``X-Failed-Recipients`` header;
3. the notice text of the common non-DSN formats (Postfix, Exim, qmail,
   sendmail, Exchange, GroupWise, Yahoo...): the addresses it names before the
   returned message starts, minus the addresses of the parties themselves.

The original Message-ID comes from the returned ``message/rfc822`` or
``text/rfc822-headers`` part, else from an ``Original-Message-ID`` field,
else from a ``Message-ID:`` line of the returned text, so that the outgoing
mail (and with it the ticket) can be found. VERP return paths
(``bounces+player=mail.example@support.casino.example``) name the recipient
without reading the bounce at all: see ``verp_address`` / ``verp_recipient``.

Only bounded prefixes of the text are read, with regular expressions whose
quantifiers are bounded, so a megabyte of junk costs milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

from parsers.automated import is_bounce
from parsers.errors import RejectedMail
from parsers.headers import first_message_id
from parsers.mail import parse
from parsers.model import InboundMail

__all__ = ["Bounce", "bounce_info", "verp_address", "verp_recipient"]


@dataclass(frozen=True)
class Bounce:
    recipients: tuple[str, ...]  # failed (or, when not permanent, delayed) addresses, lower case
    permanent: bool  # False for a delay warning: the MTA is still trying
    original_message_id: str | None  # of the mail that bounced, without angle brackets
    status: str | None  # RFC 3463 code such as "5.1.1", when the bounce gives one


# Bounds on what is read: DSN parts and notices are small; returned headers
# sit at the start of their part.
_PART_BYTES = 64 * 1024
_NOTICE_CHARS = 32 * 1024

_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_RETURNED_HEADER_TYPES = (
    "message/rfc822",
    "message/global",
    "text/rfc822-headers",
    "text/rfc822-header",
    "message/rfc822-headers",
    "message/global-headers",
)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# In free text only after an SMTP reply code, "#" or "Status:", not in version numbers.
_STATUS_IN_TEXT = re.compile(
    r"(?:\b[245]\d\d[ -]|#|status:?[ \t]{0,20})([245]\.\d{1,3}\.\d{1,3})\b", re.IGNORECASE
)
# An address in running text. "=" is left out of the local part so that
# Exchange's "dda:SMTP=user@host" yields the address; quantifiers are bounded.
_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+?^_`{|}~.-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}"
)
_DSN_ADDRESS = re.compile(r"[^\s@<>;,]{1,200}@[^\s@<>;,]{1,255}")


def bounce_info(mail: InboundMail) -> Bounce | None:
    """The failure a bounce reports, or None when the mail is no bounce (or reports success)."""
    if not is_bounce(mail):
        return None
    message_id = _original_message_id(mail)
    reports = _dsn_reports(mail)
    if reports:
        return _from_reports(reports, message_id)
    forwarded = _forwarded_dsn(mail)
    if forwarded is not None:
        return forwarded
    notice = _notice_text(mail)
    permanent = _reads_permanent(mail.subject, notice)
    status = _status_in(notice)
    failed = _split_addresses(mail.header("x-failed-recipients") or "")
    if not failed:
        failed = _addresses_in_notice(mail, notice)
    return Bounce(tuple(failed), permanent, message_id, status)


# --- RFC 3464 delivery-status -------------------------------------------------


@dataclass(frozen=True)
class _Report:
    address: str
    action: str
    status: str | None


def _dsn_reports(mail: InboundMail) -> list[_Report]:
    reports: list[_Report] = []
    for part in mail.attachments:
        if part.content_type in _DSN_TYPES:
            text = _text(part.payload[:_PART_BYTES])
            reports.extend(_recipient_reports(text))
    return reports


def _forwarded_dsn(mail: InboundMail) -> Bounce | None:
    """A gateway that wraps the real DSN in a message/rfc822 part (Exchange via InterScan)."""
    for part in mail.attachments:
        wrapped = part.content_type == "message/rfc822"
        if wrapped and b"delivery-status" in part.payload[:_PART_BYTES]:
            try:
                inner = parse(part.payload)
            except RejectedMail:
                continue
            reports = _dsn_reports(inner)
            if reports:
                return _from_reports(reports, _original_message_id(inner))
    return None


def _from_reports(reports: list[_Report], message_id: str | None) -> Bounce | None:
    failed = [r for r in reports if _is_failure(r)]
    delayed = [r for r in reports if _is_delay(r)]
    chosen, permanent = (failed, True) if failed else (delayed, False)
    if not chosen:
        return None  # delivered, relayed or expanded: a success notice
    addresses = tuple(dict.fromkeys(r.address for r in chosen))
    status = next((r.status for r in chosen if r.status), None)
    return Bounce(addresses, permanent, message_id, status)


def _is_failure(report: _Report) -> bool:
    if report.action:
        return report.action.startswith(("fail", "expired", "undeliver"))
    return bool(report.status and report.status.startswith("5"))


def _is_delay(report: _Report) -> bool:
    if report.action:
        return report.action.startswith("delay")
    return bool(report.status and report.status.startswith("4"))


def _recipient_reports(text: str) -> list[_Report]:
    """Per-recipient field groups; a new group starts at a blank line or a repeated field."""
    reports = []
    for group in _field_groups(text):
        address = _recipient(group.get("original-recipient")) or _recipient(
            group.get("final-recipient")
        )
        if address:
            status = _STATUS.search(group.get("status", "")) or _STATUS.search(
                group.get("diagnostic-code", "")
            )
            action = group.get("action", "").strip().lower()
            reports.append(_Report(address, action, status.group(0) if status else None))
    return reports


def _field_groups(text: str) -> list[dict[str, str]]:
    groups: list[dict[str, list[str]]] = [{}]
    values: list[str] | None = None
    for line in text.splitlines():
        if not line.strip():
            if groups[-1]:
                groups.append({})
            values = None
        elif line[0] in " \t" and values is not None:
            values.append(line.strip())
        elif ":" in line:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name in groups[-1] and name in ("original-recipient", "final-recipient"):
                groups.append({})
            values = groups[-1][name] = [value.strip()]
    return [{name: " ".join(v) for name, v in group.items()} for group in groups if group]


def _recipient(value: str | None) -> str | None:
    """'rfc822; a@b' (or a bare '<a@b>', as some gateways write) -> 'a@b'."""
    if not value:
        return None
    kind, sep, address = value.partition(";")
    if not sep:
        address = kind
    elif kind.strip().lower() not in ("rfc822", "utf-8", "x-unknown", "unknown"):
        return None
    address = address.strip().strip("<>").strip()
    return address.lower() if _DSN_ADDRESS.fullmatch(address) else None


# --- the original Message-ID ------------------------------------------------------

_ORIGINAL_ID_FIELD = re.compile(
    r"^[ \t]{0,20}(?:x-)?original-message-id[ \t]{0,20}:[ \t]{0,20}(<[^<>\s]{1,500}>)",
    re.IGNORECASE | re.MULTILINE,
)
_MESSAGE_ID_LINE = re.compile(
    r"^[ \t>|]{0,20}message-id[ \t]{0,20}:[ \t]{0,20}(<[^<>\s]{1,500}>)",
    re.IGNORECASE | re.MULTILINE,
)


def _original_message_id(mail: InboundMail) -> str | None:
    for part in mail.attachments:
        if part.content_type in _RETURNED_HEADER_TYPES and part.payload:
            headers = BytesHeaderParser(policy=compat32).parsebytes(part.payload[:_PART_BYTES])
            found = first_message_id(headers.get("message-id"))
            if found:
                return found
    for part in mail.attachments:
        if part.content_type in _DSN_TYPES:
            match = _ORIGINAL_ID_FIELD.search(_text(part.payload[:_PART_BYTES]))
            if match:
                return first_message_id(match.group(1))
    text = mail.text[: _NOTICE_CHARS * 4]
    match = _ORIGINAL_ID_FIELD.search(text) or _MESSAGE_ID_LINE.search(text)
    return first_message_id(match.group(1)) if match else None


# --- the notice text of a bounce without a DSN ------------------------------------

# Where the returned message (or its transcript) starts: the notice is above.
_RETURNED_START = re.compile(
    r"^[ \t>|*-]{0,10}(?:"
    r"(?:-{2,80}|={2,80}|\|-{2,80}).{0,40}"
    r"(?:original|returned|undelivered|unsent|rejected|copy of)"
    r"|(?:original|returned|undelivered|unsent|rejected) (?:message|mail)\b"
    r".{0,40}(?:follow|below|:)"
    r"|.{0,40}(?:message|mail) (?:text )?follows"
    r"|.{0,20}copy of (?:the|your) message"
    r"|.{0,20}below this line is a copy"
    r"|.{0,20}the (?:header|first \d+ lines)"
    r"|received:[ \t]+from\b"
    r"|return-path:[ \t]*<"
    r"|message-id:[ \t]*<"
    r"|content-type:[ \t]*(?:message/rfc822|text/rfc822-headers)"
    r")",
    re.IGNORECASE | re.MULTILINE,
)
# Lines that name a party of the original mail or the SMTP dialogue, not a failed recipient.
_PARTY_LINE = re.compile(
    r"^[ \t>|]*(?:from|sender|reply-to|return-path|to|cc|subject|mail from|envelope-from"
    r"|x-sender)[ \t]*:|mail from[ \t]*:|sender ok|for further assistance|please contact"
    r"|contact (?:your|the) (?:system )?administrator|postmaster",
    re.IGNORECASE,
)
# A failure line speaks of the failure; otherwise the address must open the line.
_FAILURE_LINE = re.compile(
    r"fail|unknown|not\b|n't\b|unable|error|reject|refused|denied|invalid|no such|undeliver"
    r"|quota|full\b|exceed|problem|recipient|deliver|bounce|unavailable|disabled|inactive"
    r"|does not exist|expired|blocked|addressed to",
    re.IGNORECASE,
)
_LEADING = re.compile(r"[ \t>|*:-]{0,20}(?:[\w -]{0,30}:[ \t]*)?[<\"']?")
_NAMES_SENDER = re.compile(r"\bfrom[ \t]*:?[ \t]*[<\"']?$", re.IGNORECASE)
_EXPANDED_FROM = re.compile(r"(?:expanded|generated) from:?[ \t]*[<\"']?$", re.IGNORECASE)
_MACHINE_LOCAL = re.compile(r"mailer-daemon|postmaster|mdaemon|.+-(?:admin|bounces|request|owner)")
_PERMANENT = re.compile(
    r"permanent|fatal|given up|giving up|not going to try again|gave up", re.IGNORECASE
)
_DELAY = re.compile(
    r"delayed|delay\b|delivery warning|warning: could not send|not yet been delivered"
    r"|will (?:continue|keep) (?:to )?try|attempts will continue|will be retried"
    r"|still being retried|postponed|temporar",
    re.IGNORECASE,
)


def _notice_text(mail: InboundMail) -> str:
    text = mail.text[:_NOTICE_CHARS]
    match = _RETURNED_START.search(text)
    return text[: match.start()] if match else text


def _reads_permanent(subject: str, notice: str) -> bool:
    if _PERMANENT.search(notice) or _PERMANENT.search(subject[:500]):
        return True
    return not (_DELAY.search(subject[:500]) or _DELAY.search(notice))


def _status_in(notice: str) -> str | None:
    match = _STATUS_IN_TEXT.search(notice)
    return match.group(1) if match else None


def _addresses_in_notice(mail: InboundMail, notice: str) -> list[str]:
    """Addresses the notice names as failed, minus the parties and mail systems.

    An address counts on a line that speaks of the failure, on a line it
    opens, or on the few lines after an introduction such as "did not reach
    the following recipient(s):". When the MTA says an address was
    "expanded from" (or "generated from") another, the other one is what was
    sent, so it replaces the expansion.
    """
    parties = _party_addresses(mail)
    found: list[str] = []
    expansions: set[str] = set()
    listing = 0
    for line in notice.splitlines():
        failure_line = bool(_FAILURE_LINE.search(line))
        if "@" in line and not _PARTY_LINE.search(line):
            for address, expanded in _named_addresses(line, failure_line or listing > 0):
                if address in parties or address in expansions:
                    continue
                if expanded and found:
                    expansions.add(found.pop())
                found.append(address)
        if failure_line and line.rstrip().endswith(":"):
            listing = 4
        elif listing:
            listing -= 1
    return list(dict.fromkeys(found))


def _named_addresses(line: str, in_context: bool) -> list[tuple[str, bool]]:
    """(address, is an "expanded from" original) for each address the line names as failed."""
    named = []
    for match in _ADDRESS.finditer(line):
        before = line[max(0, match.start() - 30) : match.start()]
        expanded = bool(_EXPANDED_FROM.search(before))
        if not (expanded or in_context or _LEADING.fullmatch(before)):
            continue
        if _NAMES_SENDER.search(before) and not expanded:
            continue
        address = match.group(0).strip(".'`").lower()
        if not _MACHINE_LOCAL.fullmatch(address.rpartition("@")[0]):
            named.append((address, expanded))
    return named


def _party_addresses(mail: InboundMail) -> set[str]:
    """The bounce's own sender and recipients: never the failed address."""
    parties = {a.addr for a in (*mail.to, *mail.cc, *mail.reply_to)}
    if mail.sender:
        parties.add(mail.sender.addr)
    return parties


def _split_addresses(value: str) -> list[str]:
    return list(dict.fromkeys(a.lower() for a in _ADDRESS.findall(value[:_NOTICE_CHARS])))


def _text(payload: bytes) -> str:
    return payload.decode("utf-8", "replace")


# --- VERP ----------------------------------------------------------------------


def verp_address(prefix: str, recipient: str, domain: str) -> str:
    """The return path that names its recipient: bounces+player=mail.example@desk.example."""
    local, _, recipient_domain = recipient.rpartition("@")
    if not local or not recipient_domain:
        raise ValueError(f"not an address: {recipient!r}")
    return f"{prefix}+{local}={recipient_domain}@{domain}"


def verp_recipient(local_part: str, prefix: str = "bounces") -> str | None:
    """The recipient a VERP local part names, or None when it is not one of ours.

    Takes the local part ("bounces+player=mail.example") or a whole address.
    The recipient's own local part may contain "=", so the last "=" splits.
    """
    local = local_part.rpartition("@")[0] if "@" in local_part else local_part
    head, plus, tail = local.partition("+")
    if not plus or head.lower() != prefix.lower():
        return None
    user, equals, domain = tail.rpartition("=")
    if not equals or not user or not domain or "." not in domain:
        return None
    return f"{user}@{domain}".lower()
