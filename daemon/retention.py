"""The retention sweep, and the daemon task that seals the event log and runs the sweep.

A sweep applies the [retention] rules in bounded batches, one transaction each (DESIGN:
guards are monitors). Per batch: take the sweep lock (PostgreSQL: one sweeper at a time
among several daemons, so two never judge the same shared file at once), mark the expired
rows with conditional updates (storage.retention), and move the files no unmarked row
refers to any more into the store's trash folder, then commit. The files are moved before
the commit, not deleted after it, so that a crash anywhere leaves a state the next sweep
finishes:

- killed before the commit: the rows are unmarked, their files wait in the trash; the next
  sweep first puts back every trashed file an unmarked row still refers to, then sweeps
  those rows again;
- killed after the commit: the rows are marked and their files are in the trash, which the
  next sweep empties.

A trashed file is deleted once no unmarked row refers to it and it has waited TRASH_GRACE:
a mail carrying the very same bytes may have been ingested meanwhile (ingest skips writing
a file that already exists, and commits its reference up to a batch later); such a file is
put back instead. A file already gone is fine everywhere. Nothing a legal hold covers is
marked, so nothing it covers is moved.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from daemon.failpoints import failpoint
from parsers import Limits, RejectedMail, parse
from storage import audit, queries
from storage import retention as rules_db
from storage.blobs import BlobStore
from storage.models import utcnow

log = logging.getLogger(__name__)

TRASH = ".trash"
TRASH_GRACE = 3600.0  # seconds a trashed file waits: longer than any ingest batch
_SWEEP_LOCK = int.from_bytes(hashlib.sha256(b"ticketd retention sweep").digest()[:8], "big",
                             signed=True)


@dataclass(frozen=True)
class RetentionRules:
    """How long each kind of data is kept; None keeps it for ever."""

    raw_mail: timedelta | None = None
    attachments: timedelta | None = None
    sent_mail: timedelta | None = None
    closed_tickets: timedelta | None = None
    rejected_mail: timedelta | None = None
    batch: int = 500

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionRules:
        r = settings.retention
        return cls(r.raw_mail, r.attachments, r.sent_mail, r.closed_tickets, r.rejected_mail,
                   r.batch)

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if f.name != "batch")


@dataclass
class SweepCounts:
    raw_mail: int = 0  # raw mails of tickets removed
    attachments: int = 0
    sent_mail: int = 0
    closed_tickets: int = 0  # anonymised
    contacts: int = 0  # anonymised with their last ticket
    rejected_mail: int = 0
    files_removed: int = 0  # deleted from the trash
    files_restored: int = 0  # put back: an unswept row still needed them

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in asdict(self).items())


class Trash:
    """Files on their way out: `<unix time>-<raw|attachment>-<digest>` under the store."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.root = Path(blobs.root) / TRASH

    def path_of(self, kind: str, digest: str) -> Path:
        return self.blobs.raw_path(digest) if kind == "raw" else self.blobs.attachment_path(digest)

    def condemn(self, kind: str, digests: Iterable[str]) -> int:
        """Move these files into the trash, durably; how many were there to move."""
        moved, folders = 0, set()
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = int(time.time())
        for digest in digests:
            source = self.path_of(kind, digest)
            with suppress(FileNotFoundError):
                os.replace(source, self.root / f"{stamp}-{kind}-{digest}")
                moved += 1
                folders.add(source.parent)
        if moved and self.blobs.fsync:
            for folder in (self.root, *folders):
                _fsync_dir(folder)
        return moved

    def entries(self) -> list[tuple[Path, float, str, str]]:
        """(path, trashed at, kind, digest) of every file in the trash."""
        found = []
        with suppress(FileNotFoundError):
            for entry in os.scandir(self.root):
                stamp, _, rest = entry.name.partition("-")
                kind, _, digest = rest.partition("-")
                if stamp.isdigit() and kind in ("raw", "attachment") and digest:
                    found.append((Path(entry.path), float(stamp), kind, digest))
        return found

    def restore(self, path: Path, kind: str, digest: str) -> None:
        target = self.path_of(kind, digest)
        if target.exists():  # written again meanwhile (same digest, same content)
            with suppress(FileNotFoundError):
                path.unlink()
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileNotFoundError):
            os.replace(path, target)


def _fsync_dir(folder: Path) -> None:
    with suppress(FileNotFoundError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_IN_USE = {"raw": rules_db.raw_in_use, "attachment": rules_db.attachment_in_use}


class RetentionSweeper:
    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, rules: RetentionRules,
                 *, now: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessions
        self._rules = rules
        self._now = now
        self.trash = Trash(blobs)

    @classmethod
    def from_settings(cls, settings: Settings, sessions: sessionmaker[Session],
                      blobs: BlobStore) -> RetentionSweeper:
        return cls(sessions, blobs, RetentionRules.from_settings(settings))

    def run_once(self, now: datetime | None = None, *, apply: bool = True) -> SweepCounts:
        """One sweep as of `now`; with apply=False only count what it would do."""
        now = now or self._now()
        if not apply:
            return self._count(now)
        counts = SweepCounts()
        self.settle(now, counts)
        r = self._rules
        if r.raw_mail:
            counts.raw_mail = self._files(now - r.raw_mail, rules_db.STORED, now)
        if r.rejected_mail:
            counts.rejected_mail = self._files(now - r.rejected_mail, rules_db.REJECTED, now)
        if r.attachments:
            counts.attachments = self._attachments(now - r.attachments, now)
        if r.sent_mail:
            counts.sent_mail = self._batches(
                "sent_mail", lambda s, limit: rules_db.sent_candidates(s, now - r.sent_mail, limit),
                lambda s, ids: (rules_db.clear_sent(s, ids, now), {}))
        if r.closed_tickets:
            self._closed(now - r.closed_tickets, now, counts)
        self.settle(now, counts)
        with self._sessions.begin() as session:
            queries.insert_event(session, "retention_swept", as_of=now.isoformat(),
                                 **asdict(counts))
        log.info("retention sweep %s", counts.line())
        return counts

    def _count(self, now: datetime) -> SweepCounts:
        r, counts = self._rules, SweepCounts()
        with self._sessions() as s:
            if r.raw_mail:
                counts.raw_mail = rules_db.count_raw(s, rules_db.STORED, now - r.raw_mail)
            if r.rejected_mail:
                counts.rejected_mail = rules_db.count_raw(s, rules_db.REJECTED,
                                                          now - r.rejected_mail)
            if r.attachments:
                counts.attachments = rules_db.count_attachments(s, now - r.attachments)
            if r.sent_mail:
                counts.sent_mail = rules_db.count_sent(s, now - r.sent_mail)
            if r.closed_tickets:
                counts.closed_tickets = rules_db.count_closed(s, now - r.closed_tickets)
        return counts

    # --- batches --------------------------------------------------------------------------

    def _batches(self, rule: str, candidates: Callable[[Session, int], list[int]],
                 mark: Callable[[Session, list[int]], tuple[int, dict[str, list[str]]]]) -> int:
        """Run `mark` over `candidates` a batch at a time, one transaction each; the rows
        marked. `mark` returns (rows marked, {kind: digests whose rows it marked})."""
        done, seen = 0, set[int]()
        while True:
            with self._sessions.begin() as session:
                self._lock(session)
                ids = [i for i in candidates(session, self._rules.batch) if i not in seen]
                if not ids:
                    return done
                seen.update(ids)
                marked, digests = mark(session, ids)
                for kind, found in digests.items():
                    unused = set(found) - _IN_USE[kind](session, sorted(set(found)))
                    self.trash.condemn(kind, sorted(unused))
                failpoint(f"retention-before-commit:{rule}")
            failpoint(f"retention-after-commit:{rule}")
            done += marked

    def _files(self, cutoff: datetime, outcomes: tuple[str, ...], now: datetime) -> int:
        rejected = outcomes == rules_db.REJECTED

        def mark(session: Session, ids: list[int]) -> tuple[int, dict[str, list[str]]]:
            digests = rules_db.mark_raw(session, ids, now)
            # Ingest writes the attachments of a mail it then ignores, with no row to name
            # them: only the mail itself says which they are.
            parts = [d for digest in digests for d in self._attachments_of(digest)] \
                if rejected else []
            return len(digests), {"raw": digests, "attachment": parts}

        rule = "raw_mail" if outcomes == rules_db.STORED else "rejected_mail"
        return self._batches(
            rule, lambda s, limit: rules_db.raw_candidates(s, outcomes, cutoff, limit), mark)

    def _attachments_of(self, digest: str) -> list[str]:
        """The digests of a stored raw mail's attachments; none when it is gone or unreadable."""
        try:
            raw = self.trash.blobs.get_raw(digest)
        except (OSError, EOFError, ValueError):  # gone, or not gzip: nothing to find
            return []
        try:
            return [part.sha256 for part in parse(raw, Limits()).attachments]
        except RejectedMail:
            return []

    def _attachments(self, cutoff: datetime, now: datetime) -> int:
        def mark(session: Session, ids: list[int]) -> tuple[int, dict[str, list[str]]]:
            digests = rules_db.mark_attachments(session, ids, now)
            return len(digests), {"attachment": digests}

        return self._batches("attachments",
                             lambda s, limit: rules_db.attachment_candidates(s, cutoff, limit),
                             mark)

    def _closed(self, cutoff: datetime, now: datetime, counts: SweepCounts) -> None:
        def mark(session: Session, ids: list[int]) -> tuple[int, dict[str, list[str]]]:
            raw: list[str] = []
            attachments: list[str] = []
            done = 0
            for ticket_id in ids:
                result = rules_db.anonymise_ticket(session, ticket_id, now)
                if result is not None:
                    done += 1
                    raw += result.raw
                    attachments += result.attachments
                    counts.contacts += result.contacts
            return done, {"raw": raw, "attachment": attachments}

        # Tickets are bigger than rows: a tenth of the batch per transaction.
        limit = max(1, self._rules.batch // 10)
        counts.closed_tickets = self._batches(
            "closed_tickets", lambda s, _: rules_db.closed_candidates(s, cutoff, limit), mark)

    def settle(self, now: datetime, counts: SweepCounts) -> None:
        """Empty the trash: put back what unswept rows still refer to, delete the rest once
        it has waited TRASH_GRACE (measured on the later of `now` and the real clock)."""
        entries = self.trash.entries()
        if not entries:
            return
        latest = max(now.timestamp(), time.time())
        with self._sessions.begin() as session:
            self._lock(session)
            for kind in ("raw", "attachment"):
                mine = [e for e in entries if e[2] == kind]
                in_use = _IN_USE[kind](session, sorted({e[3] for e in mine}))
                for path, stamp, _, digest in mine:
                    if digest in in_use:
                        self.trash.restore(path, kind, digest)
                        counts.files_restored += 1
                    elif latest - stamp >= TRASH_GRACE:
                        with suppress(FileNotFoundError):
                            path.unlink()
                            counts.files_removed += 1

    def _lock(self, session: Session) -> None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SWEEP_LOCK})


class RecordsKeeper:
    """The daemon task: chain new events every `seal_every`, sweep every `sweep_every`."""

    def __init__(self, sessions: sessionmaker[Session], sweeper: RetentionSweeper | None,
                 seal_every: float, sweep_every: float) -> None:
        self._sessions = sessions
        self._sweeper = sweeper
        self._seal_every = seal_every
        self._sweep_every = sweep_every

    @classmethod
    def from_settings(cls, settings: Settings, sessions: sessionmaker[Session],
                      blobs: BlobStore) -> RecordsKeeper:
        rules = RetentionRules.from_settings(settings)
        sweeper = RetentionSweeper(sessions, blobs, rules) if rules.any else None
        return cls(sessions, sweeper, settings.audit.seal_interval.total_seconds(),
                   settings.retention.interval.total_seconds())

    async def run(self, stop: asyncio.Event) -> None:
        last_sweep = float("-inf")
        while not stop.is_set():
            await self._guarded("seal", lambda: audit.seal(self._sessions))
            if self._sweeper is not None and time.monotonic() - last_sweep >= self._sweep_every:
                last_sweep = time.monotonic()
                await self._guarded("retention sweep", self._sweeper.run_once)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._seal_every)

    async def _guarded(self, what: str, work: Callable[[], object]) -> None:
        try:
            await asyncio.to_thread(work)
        except Exception as err:  # noqa: BLE001 - the database may be down for a while
            log.error("%s failed error=%s", what, type(err).__name__)
