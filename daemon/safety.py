"""Safety before classification (DESIGN): what our MTA's spam filter said and what clamd
found in the attachments, as one value per mail that the ingest step acts on.

The spam verdict is pure (parsers.spam); the scan is I/O, done here, before the mail's
transaction opens, so a slow clamd never holds a database lock. The settings become
values in small functions of their own (`spam_policy`, `screener`), so that whatever
builds the daemon's runtime can call them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

from config import Settings
from daemon import metrics
from daemon.scan import ClamdScanner, ScannerUnavailable
from parsers.dangerous import never_forward
from parsers.model import Attachment, InboundMail
from parsers.spam import DEFAULT_SPAM_HEADERS, SpamPolicy, SpamVerdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refused:
    """An attachment never forwarded: infected (kept in the quarantine area) or a program."""

    filename: str
    sha256: str
    reason: str
    infected: bool = False


@dataclass(frozen=True)
class Screening:
    spam: SpamVerdict | None = None
    refused: tuple[Refused, ...] = ()
    unscanned: frozenset[str] = frozenset()  # sha256 of attachments no scanner has seen
    scanner_error: str = ""
    # sha256 of attachments clamd found clean; None when no screener is configured at all
    # (ingest-only set-ups). Anything else, such as the attachments of a mail an agent
    # forwarded, was never scanned and is not forwarded.
    clean: frozenset[str] | None = None

    def infected(self, item: Attachment) -> bool:
        return any(r.infected and r.sha256 == item.sha256 for r in self.refused)

    def kept(self, attachments: tuple[Attachment, ...]) -> tuple[Attachment, ...]:
        """What goes to the normal attachment store: all but the infected."""
        return tuple(a for a in attachments if not self.infected(a))

    def received(self, mail: InboundMail) -> InboundMail:
        """The mail as the acknowledgement lists it: without the refused attachments."""
        refused = {r.sha256 for r in self.refused}
        return replace(mail, attachments=tuple(a for a in mail.attachments
                                               if a.sha256 not in refused))

    def forwardable(self, attachments: tuple[Attachment, ...]) -> tuple[Attachment, ...]:
        """What may be sent on to agents or players: scanned clean and not a program."""
        refused = {r.sha256 for r in self.refused}
        return tuple(a for a in attachments
                     if a.sha256 not in refused and a.sha256 not in self.unscanned
                     and (self.clean is None or a.sha256 in self.clean))


@dataclass(frozen=True)
class Screener:
    """The scanning half: clamd (None: scanning is off, nothing is forwarded unscanned)."""

    scanner: ClamdScanner | None
    on_unavailable: Literal["hold", "store"] = "store"

    def screen(self, attachments: tuple[Attachment, ...]) -> Screening:
        """Scan each attachment once; raises ScannerUnavailable when clamd is away and the
        setting is "hold" (the caller leaves the mail in the mailbox)."""
        refused: list[Refused] = []
        unscanned: set[str] = set()
        clean: set[str] = set()
        error = ""
        for item in _distinct(attachments):
            verdict, error = self._scan(item, error)
            if verdict.startswith("infected"):
                refused.append(Refused(item.filename, item.sha256, verdict, True))
                continue
            if verdict.startswith("not scannable"):  # stored, never forwarded, not held
                refused.append(Refused(item.filename, item.sha256, verdict))
                continue
            (clean if verdict == "clean" else unscanned).add(item.sha256)
            if why := never_forward(item):
                refused.append(Refused(item.filename, item.sha256, why))
        return Screening(refused=tuple(refused), unscanned=frozenset(unscanned),
                         scanner_error=error, clean=frozenset(clean))

    def _scan(self, item: Attachment, error: str) -> tuple[str, str]:
        """("clean" | "infected: <signature>" | "not scannable: <why>" | "unscanned", the
        scanner's error so far). After one failure the mail's other attachments are not tried:
        clamd is away. A refusal of one stream (too long for clamd) is no such failure."""
        if self.scanner is None or error:
            return "unscanned", error
        try:
            found = self.scanner.scan(item.payload)
        except ScannerUnavailable as err:
            metrics.SCANNER_UNAVAILABLE.inc()
            if self.on_unavailable == "hold":
                raise
            log.warning("attachments stored unscanned: %s", err)
            return "unscanned", str(err)
        if found.verdict == "infected":
            return f"infected: {found.signature}", ""
        if found.verdict == "unscannable":
            log.warning("attachment not scannable: %s", found.signature)
            return f"not scannable: clamd: {found.signature}", ""
        return "clean", ""


def check_only(attachments: tuple[Attachment, ...]) -> Screening:
    """No screener configured (ingest-only set-ups): nothing scanned, programs still refused."""
    refused = tuple(Refused(a.filename, a.sha256, why) for a in _distinct(attachments)
                    if (why := never_forward(a)))
    return Screening(refused=refused)


def _distinct(attachments: tuple[Attachment, ...]) -> list[Attachment]:
    seen: dict[str, Attachment] = {}
    for item in attachments:
        seen.setdefault(item.sha256 + "\0" + item.filename, item)
    return list(seen.values())


# --- from settings ---------------------------------------------------------------------

def spam_policy(settings: Settings) -> SpamPolicy:
    spam = settings.spam
    headers = spam.headers or DEFAULT_SPAM_HEADERS
    return SpamPolicy(enabled=spam.enabled, headers=tuple(headers.items()),
                      trusted_hops=frozenset(h.lower().rstrip(".") for h in spam.trusted_hops))


def screener(settings: Settings) -> Screener:
    scan = settings.scan
    if not scan.enabled:
        return Screener(None)
    if scan.address is not None:
        clamd = ClamdScanner(address=scan.address, timeout=scan.timeout)
    else:
        clamd = ClamdScanner(socket_path=scan.socket, timeout=scan.timeout)
    return Screener(clamd, scan.on_unavailable)


# The EICAR anti-virus test file: every real signature database finds it, and it does nothing.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def check_clamd(settings: Settings) -> str:
    """What `ticketd scan check` says: clamd answers and its database finds the EICAR test
    file. Raises ScannerUnavailable or ValueError with the reason otherwise."""
    scanner = screener(settings).scanner
    if scanner is None:
        return "scanning is off ([scan] enabled = false): no attachment is forwarded"
    found = scanner.scan(EICAR)
    if found.verdict != "infected":
        raise ValueError(f"clamd at {scanner.where} does not find the EICAR test file: "
                         "its signature database is missing or empty")
    return f"clamd at {scanner.where} answers and finds the EICAR test file ({found.signature})"
