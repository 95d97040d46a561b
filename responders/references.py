"""References in our outgoing mail that lead a reply back to its ticket.

A mail joins a ticket only by a reference we can trust (DESIGN invariant 4). Our
Message-IDs and reply addresses carry an HMAC of the ticket number, so no one can
write one for a ticket they were never sent; the subject tag is plain text, trusted
by the threading rules only when its sender already takes part in the ticket.

Mail sent to one member of the team about a ticket (a notification, a refused
command's answer, an escalation) carries a second signature inside its Message-ID's
nonce, over its purpose and that recipient: a reply to it is the only credential
that lets a mail from that address act as an agent on that ticket (invariant 5).
The player's own acknowledgement, or a notification sent to someone else, threads
but authorises no one.

Keys come newest first: sign with keys[0], accept any, so a key can be rotated
without orphaning the replies to mail signed with the old one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from functools import lru_cache

from responders.addresses import addr_spec, ascii_domain

__all__ = [
    "agent_message_id_for",
    "message_id_for",
    "numbers_in_subject",
    "reply_address",
    "strip_reply_prefixes",
    "strip_tags",
    "subject_tag",
    "tag_subject",
    "token_from_address",
    "verify_agent_reference",
    "verify_message_id",
]

_SIG_CHARS = 16  # 80 bits of HMAC-SHA256 in base32: not guessable by sending mail
_TOKEN_CHARS = 12  # 60 bits: the reply address must keep its local part within 64
_MAX_NUMBER = 10**12
_NUMBER = r"(0|[1-9][0-9]{0,11})"
# Lower-case throughout: some MTAs lower-case what they pass on, so we sign lower case.
_MESSAGE_ID = re.compile(rf"t{_NUMBER}\.([a-z0-9]{{1,32}})\.([a-z2-7]{{{_SIG_CHARS}}})@[a-z0-9.-]+")
_TOKEN = re.compile(rf"t{_NUMBER}\.([a-z2-7]{{{_TOKEN_CHARS}}})")
_NONCE = re.compile(r"[a-z0-9]{1,32}")
# The nonce of a Message-ID for a member of the team: "a", the recipient's signature, a base.
_AGENT_NONCE = re.compile(rf"a([a-z2-7]{{{_SIG_CHARS}}})([a-z0-9]{{1,15}})")
_AGENT_PURPOSE = "to-agent"


def _signature(key: bytes, text: str, length: int) -> str:
    digest = hmac.digest(key, text.encode("ascii"), "sha256")
    # Base32 writes each 5 bytes as 8 characters on their own, so the first `length`
    # characters need only the first 5-byte groups: the same prefix for a fraction of the
    # work (b32encode is Python code, and every mail we send is signed once or twice).
    groups = -(-length // 8)
    return base64.b32encode(digest[: 5 * groups]).decode("ascii").lower()[:length]


def _signing_key(keys: tuple[bytes, ...]) -> bytes:
    if not keys or not isinstance(keys[0], bytes) or not keys[0]:
        raise ValueError("no signing key: [security] must give at least one secret")
    return keys[0]


def _signed(keys: tuple[bytes, ...], text: str, signature: str) -> bool:
    # Every key is tried, without stopping at a match, so timing does not tell which.
    matched = False
    for key in keys:
        if isinstance(key, bytes) and key:
            expected = _signature(key, text, len(signature))
            matched |= hmac.compare_digest(expected, signature)
    return matched


def _check_number(number: int) -> int:
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < _MAX_NUMBER:
        raise ValueError("a ticket number is an int from 0 to 10**12 - 1")
    return number


# --- Message-IDs ----------------------------------------------------------------------

def message_id_for(
    ticket_number: int, keys: tuple[bytes, ...], domain: str, *, nonce: str | None = None
) -> str:
    """``t<number>.<nonce>.<sig>@<domain>``, without angle brackets.

    The nonce makes each mail's id unique; give one only to rebuild a known id.
    """
    number = _check_number(ticket_number)
    host = ascii_domain(domain)
    if host is None:
        raise ValueError("not a domain for a Message-ID")
    nonce = base64.b32encode(secrets.token_bytes(10)).decode("ascii") if nonce is None else nonce
    nonce = nonce.lower()
    if not _NONCE.fullmatch(nonce):
        raise ValueError("a nonce is 1 to 32 letters and digits")
    signed = f"t{number}.{nonce}"
    return f"{signed}.{_signature(_signing_key(keys), signed, _SIG_CHARS)}@{host}"


def verify_message_id(msgid: str, keys: tuple[bytes, ...]) -> int | None:
    """The ticket number of one of our Message-IDs, or None when it is not ours.

    The domain is not signed: a changed support domain must not orphan old threads.
    """
    if not isinstance(msgid, str) or len(msgid) > 300:
        return None
    text = msgid.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    found = _MESSAGE_ID.fullmatch(text.lower())
    if found is None:
        return None
    number, nonce, signature = found.groups()
    return int(number) if _signed(keys, f"t{number}.{nonce}", signature) else None


def _agent_text(number: int, base: str, recipient: str) -> str:
    # Purpose and recipient inside the signed text: no other signature of ours matches it.
    return f"{_AGENT_PURPOSE}:{recipient.strip().lower()}:t{number}.{base}"


def agent_message_id_for(
    ticket_number: int, keys: tuple[bytes, ...], domain: str, recipient: str,
    *, nonce: str | None = None,
) -> str:
    """A Message-ID for mail to one member of the team (``recipient``, their address or
    their group's) about a ticket: it threads like any of ours (``verify_message_id``) and
    is a credential for that recipient only (``verify_agent_reference``)."""
    number = _check_number(ticket_number)
    if not isinstance(recipient, str) or "@" not in recipient:
        raise ValueError("an agent's Message-ID names the address it is sent to")
    base = secrets.token_hex(6) if nonce is None else nonce.lower()
    if not _NONCE.fullmatch(base):
        raise ValueError("a nonce is 1 to 32 letters and digits")
    if len(base) > 15:  # a caller's long stable nonce: still stable, and short enough
        base = hashlib.sha256(base.encode("ascii")).hexdigest()[:15]
    bound = _signature(_signing_key(keys), _agent_text(number, base, recipient), _SIG_CHARS)
    return message_id_for(number, keys, domain, nonce=f"a{bound}{base}")


def verify_agent_reference(
    msgid: str, keys: tuple[bytes, ...], recipients: tuple[str, ...]
) -> int | None:
    """The ticket number of a Message-ID we made for mail to one of ``recipients``, else
    None: not ours, or ours but for a player, for someone else, or without a recipient."""
    number = verify_message_id(msgid, keys)
    if number is None:
        return None
    text = msgid.strip().removeprefix("<").removesuffix(">").lower()
    nonce = text.split(".", 2)[1]
    found = _AGENT_NONCE.fullmatch(nonce)
    if found is None:
        return None
    bound, base = found.groups()
    matched = False
    for recipient in recipients:  # every one tried: timing does not tell which matched
        matched |= _signed(keys, _agent_text(number, base, recipient), bound)
    return number if matched else None


# --- reply addresses (sub-addressing) ------------------------------------------------

def _reply_text(number: int) -> str:
    # Its own prefix, so that no Message-ID signature ever serves as a reply token.
    return f"reply:t{number}"


def reply_address(support_address: str, ticket_number: int, keys: tuple[bytes, ...]) -> str:
    """``support+t<number>.<sig>@domain``: replies to it name their ticket."""
    number = _check_number(ticket_number)
    support = addr_spec(support_address)
    if support is None:
        raise ValueError("the support address is not a valid mail address")
    local, _, domain = support.rpartition("@")
    token = f"t{number}.{_signature(_signing_key(keys), _reply_text(number), _TOKEN_CHARS)}"
    if len(local) + 1 + len(token) > 64:
        raise ValueError("the support address is too long for a reply token")
    return f"{local}+{token}@{domain}"


def token_from_address(addr: str, support_address: str, keys: tuple[bytes, ...]) -> int | None:
    """The ticket number of a reply address we made for this support address, else None."""
    if not isinstance(addr, str):
        return None
    found = addr_spec(addr.strip().removeprefix("<").removesuffix(">"))
    support = addr_spec(support_address)
    if found is None or support is None:
        return None
    local, _, domain = found.lower().rpartition("@")
    support_local, _, support_domain = support.lower().rpartition("@")
    if domain != support_domain or not local.startswith(support_local + "+"):
        return None
    token = _TOKEN.fullmatch(local[len(support_local) + 1 :])
    if token is None:
        return None
    number, signature = token.groups()
    return int(number) if _signed(keys, _reply_text(int(number)), signature) else None


# --- subject tags ---------------------------------------------------------------------

@lru_cache(maxsize=16)
def _tag_pattern(fmt: str) -> re.Pattern[str]:
    """The tag format as a pattern: any case, any spacing, leading zeros allowed."""
    if fmt.count("{number}") != 1:
        raise ValueError('a subject tag format holds "{number}" exactly once')
    before, _, after = (part.strip() for part in fmt.partition("{number}"))
    if not before and not after:
        raise ValueError("a subject tag needs text around {number}, or any number would match")
    spaced = [r"\s*".join(re.escape(word) for word in part.split()) for part in (before, after)]
    return re.compile(rf"{spaced[0]}\s*0*([0-9]{{1,12}})(?![0-9])\s*{spaced[1]}", re.IGNORECASE)


def subject_tag(number: int, fmt: str = "[#{number}]") -> str:
    _tag_pattern(fmt)  # refuses a format that could not be found again
    return fmt.format(number=_check_number(number))


def numbers_in_subject(subject: str, fmt: str = "[#{number}]") -> tuple[int, ...]:
    """Every ticket number tagged in a subject, in order, once each, wherever it stands."""
    return tuple(dict.fromkeys(int(found) for found in _tag_pattern(fmt).findall(subject)))


def strip_tags(subject: str, fmt: str = "[#{number}]") -> str:
    """The subject without any tag: a player may paste another ticket's tag."""
    return " ".join(_tag_pattern(fmt).sub(" ", subject).split())


def tag_subject(subject: str, number: int, fmt: str = "[#{number}]") -> str:
    """The subject with the ticket's tag at its end, unless it already carries it."""
    if number in numbers_in_subject(subject, fmt):
        return subject
    subject = subject.strip()
    tag = subject_tag(number, fmt)
    return f"{subject} {tag}" if subject else tag


# Reply and forward prefixes of the clients our players use, with counters: "RE[2]:",
# "Re(3):", "Re^2:", and French spacing "RE :".
_PREFIX = re.compile(
    r"\s*(?:re|fwd?|aw|wg|sv|vs|antw|tr|rv|enc|odp|pd|ответ|отв|пересл)"
    r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:：]\s*",
    re.IGNORECASE,
)


def strip_reply_prefixes(subject: str) -> str:
    """"Re: Fwd: Отв: AW: x" → "x"."""
    while True:
        found = _PREFIX.match(subject)
        if found is None or found.end() == 0:
            return subject.strip()
        subject = subject[found.end() :]
