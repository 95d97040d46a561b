"""Is this mail spam, as our own MTA's filter judged it? Invariant 10: trust comes from our
own MTA, at the top.

A spam filter (SpamAssassin, Rspamd) runs inside our MTA and writes its verdict into
headers on receipt. Anyone can write the same headers into the mail they send, so a
verdict counts only when it stands in the part of the header block our side wrote: above
the first ``Received:`` header that a hop outside our own wrote. Received headers are
prepended by each hop, so everything above the handover to us was added on our side and
everything below it came with the mail. Which Received headers are ours:

- with ``trusted_hops`` configured (our MTA's names, as they appear after ``by`` in its
  Received headers), every one whose ``by`` names one of them, from the top down;
- without, only the topmost Received header: our MTA wrote it when the mail reached us.

Inside that part, only the topmost instance of each configured header is read: a filter
writes its header once, above anything that came with the mail. The verdict is spam when
any of those topmost instances says so. A "no" never outweighs another header's "yes", so a
player's own ``X-Spam-Flag: NO`` changes nothing; a sender's forged "yes" that survives
these rules can only put its own mail in the Junk folder. A mail with no Received header at
all (a file handed to ``ticketd ingest``) passed no MTA of ours and has no verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from parsers.model import InboundMail

__all__ = ["DEFAULT_SPAM_HEADERS", "SpamPolicy", "SpamVerdict", "spam_verdict"]

# Header (any case) -> a pattern that, found at the start of its value (any case), means
# spam. SpamAssassin writes X-Spam-Flag and X-Spam-Status; Rspamd's milter_headers module
# writes X-Spamd-Result ("default: True [...]" once the action is reject), X-Rspamd-Action
# and X-Spam ("Yes").
DEFAULT_SPAM_HEADERS: dict[str, str] = {
    "X-Spam-Flag": r"yes\b",
    "X-Spam-Status": r"yes\b",
    "X-Spamd-Result": r"default\s*:\s*true\b",
    "X-Rspamd-Action": r"(reject|add header|rewrite subject)\b",
    "X-Spam": r"yes\b",
}

_BY = re.compile(r"(?:^|[\s;)])by\s+([^\s;()]+)", re.IGNORECASE)
_QUOTE = 120  # how much of a header value a verdict keeps


@dataclass(frozen=True)
class SpamPolicy:
    enabled: bool = True
    headers: tuple[tuple[str, str], ...] = tuple(DEFAULT_SPAM_HEADERS.items())
    trusted_hops: frozenset[str] = frozenset()  # lower-case host names after "by"

    def __post_init__(self) -> None:
        # Compiled once per policy, not once per mail.
        compiled = tuple((name.lower(), re.compile(pattern, re.IGNORECASE))
                         for name, pattern in self.headers)
        object.__setattr__(self, "_compiled", compiled)


@dataclass(frozen=True)
class SpamVerdict:
    header: str  # the header that said spam, lower case
    value: str  # its value, shortened

    @property
    def reason(self) -> str:
        return f"{self.header}: {self.value}"


def spam_verdict(mail: InboundMail, policy: SpamPolicy) -> SpamVerdict | None:
    """The verdict of our own filter when it says spam; None when it does not or cannot."""
    if not policy.enabled:
        return None
    ours = trusted_block(mail.headers, policy.trusted_hops)
    for name, pattern in policy._compiled:  # type: ignore[attr-defined]
        value = _topmost(ours, name)
        if value is not None and pattern.match(value.strip()):
            return SpamVerdict(name, value.strip()[:_QUOTE])
    return None


def trusted_block(headers: tuple[tuple[str, str], ...],
                  trusted_hops: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """The headers our side wrote: those above the first Received header not written by us."""
    seen_received = False
    for index, (name, value) in enumerate(headers):
        if name != "received":
            continue
        if trusted_hops:
            if _by_host(value) not in trusted_hops:
                return headers[:index]
        elif seen_received:
            return headers[:index]
        seen_received = True
    return headers if seen_received else ()


def _by_host(received: str) -> str:
    found = _BY.search(received)
    return found.group(1).lower().rstrip(".") if found else ""


def _topmost(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None
