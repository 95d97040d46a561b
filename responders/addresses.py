"""What counts as a mail address we write to: a strict addr-spec, in ASCII.

Outgoing mail is sent without SMTPUTF8, so the local part must be ASCII and an IDN
domain is written in its ASCII (punycode) form. Quoted local parts, domain literals
and local parts holding an RFC 2047 encoded word are refused: each is legal, none is
a real player's address in practice, and each has been used to make a parser and an
MTA disagree about who the recipient is ("Splitting the email atom", 2024).
"""

from __future__ import annotations

import re

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3, a path of 256 less its angle brackets


def ascii_domain(domain: str) -> str | None:
    """The lower-case ASCII form of a host name, or None when it is not one."""
    if not isinstance(domain, str) or not domain or len(domain) > 253:
        return None
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    domain = domain.lower()
    labels = domain.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    # An all-digit last label is an IP address, which no player's mail lives at.
    return None if labels[-1].isdigit() or len(domain) > 253 else domain


def addr_spec(value: str) -> str | None:
    """``local@domain`` with the domain normalised, or None when it is not strictly valid."""
    if not isinstance(value, str) or len(value) > MAX_ADDRESS or value.count("@") != 1:
        return None
    local, _, domain = value.partition("@")
    if len(local) > 64 or not _LOCAL.fullmatch(local) or "=?" in local:
        return None
    ascii_host = ascii_domain(domain)
    if ascii_host is None:
        return None
    found = f"{local}@{ascii_host}"
    return found if len(found) <= MAX_ADDRESS else None
