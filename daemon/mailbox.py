"""The mailbox runner: drain what is in the folder, then wait for more (DESIGN invariant 1).

A mail leaves the folder only after the transaction that stored it has
committed; a crash before the move leaves it in place, and the next drain
finds it again and the ingest key makes the second pass a no-op.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from daemon.ingest import Ingestor, IngestResult, TemporaryFailure
from storage import queries

log = logging.getLogger(__name__)


class Source(Protocol):
    """What the runner needs of a mailbox (daemon.imap.ImapSource provides it)."""

    @property
    def uidvalidity(self) -> int: ...
    def pending(self, limit: int) -> list[int]: ...
    def fetch(self, uids: list[int]) -> list: ...
    def mark_processed(self, uids: list[int]) -> None: ...
    def mark_quarantined(self, uids: list[int]) -> None: ...
    def mark_junk(self, uids: list[int]) -> None: ...
    def wait(self, timeout: float) -> bool: ...


@dataclass
class DrainStats:
    stored: int = 0
    duplicates: int = 0
    ignored: int = 0
    quarantined: int = 0
    held: int = 0  # left in the folder for a later drain
    outcomes: list[IngestResult] = field(default_factory=list)


class MailboxRunner:
    def __init__(
        self,
        source: Source,
        ingestor: Ingestor | Callable[[], Ingestor],
        sessions: sessionmaker[Session],
        *,
        name: str,
        batch_size: int = 50,
        batch_bytes: int = 16 * 2**20,  # one transaction holds at most this much mail
        on_result=None,  # callable(IngestResult, seconds), for metrics and progress
    ) -> None:
        self.source = source
        self.name = name  # the cursor's key, e.g. "support@imap.example:993/INBOX"
        # A function gives the ingestor of the runtime in force, asked once per batch: a
        # reload applies from the next batch on, never to half of one.
        self._ingestor = ingestor if callable(ingestor) else (lambda: ingestor)
        self.sessions = sessions
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.on_result = on_result
        self.stop = threading.Event()
        self._held: set[int] = set()  # UIDs left in the folder this drain (clamd away)

    def sync_cursor(self) -> None:
        """Record UIDVALIDITY; a change is an event (the drain re-reads the folder anyway)."""
        with self.sessions.begin() as session:
            if queries.save_cursor(session, self.name, self.source.uidvalidity, 0):
                log.warning("uidvalidity changed, re-reading the folder",
                            extra={"fields": {"mailbox": self.name}})
                queries.insert_event(
                    session, "uidvalidity_changed", mailbox=self.name,
                    uidvalidity=self.source.uidvalidity,
                )

    def drain(self) -> DrainStats:
        """Ingest everything the folder holds now; stops early when asked to stop."""
        stats = DrainStats()
        self._held.clear()  # held mail is tried again on the next drain, not in this one
        while not self.stop.is_set():
            listed = self.source.pending(self.batch_size + len(self._held))
            uids = [uid for uid in listed if uid not in self._held][:self.batch_size]
            if not uids:
                break
            self._batch(uids, stats)
        return stats

    def _batch(self, uids: list[int], stats: DrainStats) -> None:
        done: list[int] = []
        bad: list[int] = []
        junk: list[int] = []  # our MTA's filter said spam: kept, and out of the agents' way
        try:
            for group in _by_size(self.source.fetch(uids), self.batch_bytes):
                if self.stop.is_set():
                    break
                started = time.perf_counter()
                results = self._ingest(group)
                share = (time.perf_counter() - started) / len(group)
                for fetched, result in zip(group, results, strict=True):
                    if result.outcome == "held":
                        self._held.add(fetched.uid)
                    else:
                        _pile(result, done, bad, junk).append(fetched.uid)
                    _count(stats, result)
                    if self.on_result:
                        self.on_result(result, share)
        finally:
            # Whatever was committed leaves the folder, even when a later mail failed.
            if done:
                self.source.mark_processed(done)
            if bad:
                self.source.mark_quarantined(bad)
            if junk:
                self.source.mark_junk(junk)
            if done or bad or junk:
                with self.sessions.begin() as session:
                    queries.save_cursor(
                        session, self.name, self.source.uidvalidity, max(done + bad + junk)
                    )

    def _ingest(self, group: list) -> list[IngestResult]:  # daemon.imap.Fetched
        """The downloaded mails in one transaction; one too large to download is refused."""
        results: dict[int, IngestResult] = {}
        ingestor = self._ingestor()
        whole = [f for f in group if f.raw is not None]
        if whole:
            stored = ingestor.ingest_many([(f.raw, self._source(f), f.delivered_at)
                                           for f in whole])
            results.update(zip((f.uid for f in whole), stored, strict=True))
        for fetched in group:
            if fetched.raw is None:
                results[fetched.uid] = ingestor.refuse_unfetched(
                    self._source(fetched), fetched.size)
        return [results[f.uid] for f in group]

    def _source(self, fetched) -> str:  # noqa: ANN001 - daemon.imap.Fetched
        return f"{self.name};uid={fetched.uid}"

    def run(self, idle_timeout: float = 300) -> None:
        """Drain, then wait for new mail; until stop is set. Errors go to the caller."""
        self.sync_cursor()
        while not self.stop.is_set():
            self.drain()
            if self.stop.is_set():
                break
            self.source.wait(idle_timeout)


def _by_size(fetched: list, limit: int) -> Iterator[list]:
    """Consecutive groups of fetched mails, each at most `limit` bytes (or one mail)."""
    group: list = []
    size = 0
    for item in fetched:
        if group and size + item.size > limit:
            yield group
            group, size = [], 0
        group.append(item)
        size += item.size
    if group:
        yield group


def _pile(result: IngestResult, done: list[int], bad: list[int], junk: list[int]) -> list[int]:
    """Which folder a mail goes to: Processed, Quarantine or Junk."""
    return {"quarantined": bad, "spam": junk}.get(result.outcome, done)


def _count(stats: DrainStats, result: IngestResult) -> None:
    stats.outcomes.append(result)
    if result.duplicate:
        stats.duplicates += 1
    elif result.outcome == "quarantined":
        stats.quarantined += 1
    elif result.outcome == "held":
        stats.held += 1
    elif result.outcome in ("ignored", "spam"):
        stats.ignored += 1
    else:
        stats.stored += 1


__all__ = ["DrainStats", "MailboxRunner", "TemporaryFailure"]
