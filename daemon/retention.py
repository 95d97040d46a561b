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
import logging
import os
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from daemon.failpoints import failpoint
from daemon.pacing import pause
from parsers import Limits, RejectedMail, parse
from responders.loops import LoopPolicy
from storage import audit, queries
from storage import loops as loop_ledger
from storage import retention as rules_db
from storage.blobs import BlobStore
from storage.crypto import DataKey, KeyProblem, blob_name
from storage.locks import lock_for_transaction, try_lock_for_transaction
from storage.models import utcnow
from storage.vault import KeyDestroyed, vault_of

log = logging.getLogger(__name__)

TRASH = ".trash"
TRASH_GRACE = 3600.0  # seconds a trashed file waits: longer than any ingest batch
_SWEEP_LOCK = "ticketd retention sweep"  # one sweeper at a time among the daemons


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


@dataclass(frozen=True)
class TrashEntry:
    path: Path
    stamp: float
    kind: str  # raw | attachment
    digest: str | None  # a file in clear
    key_id: int | None  # a sealed file: its data key's id ...
    name: str | None  # ... and its name, HMAC(data key, digest)


class Trash:
    """Files on their way out, under the store: `<unix time>-<kind>-<digest>` for a file in
    clear, `<unix time>-<kind>-k<key id>-<name>` for a sealed one. A sealed file's trash name
    keeps its store name, not the digest (the disk must not show digests); the key id lets a
    later sweep ask, with that key, whether an unswept row still names the file."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.root = Path(blobs.root) / TRASH

    def path_of(self, kind: str, digest: str, key: DataKey | None = None) -> Path:
        if kind == "raw":
            return self.blobs.raw_path(digest, key)
        return self.blobs.attachment_path(digest, key)

    def condemn(self, kind: str, files: Iterable[tuple[str, DataKey | None]]) -> int:
        """Move these files (digest, data key or None) into the trash, durably; how many
        were there to move."""
        moved, folders = 0, set()
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = int(time.time())
        for digest, key in files:
            source = self.path_of(kind, digest, key)
            label = digest if key is None else f"k{key.id}-{source.name.removesuffix(SEALED)}"
            with suppress(FileNotFoundError):
                os.replace(source, self.root / f"{stamp}-{kind}-{label}")
                moved += 1
                folders.add(source.parent)
        if moved and self.blobs.fsync:
            for folder in (self.root, *folders):
                _fsync_dir(folder)
        return moved

    def entries(self) -> list[TrashEntry]:
        """Every file in the trash."""
        found = []
        with suppress(FileNotFoundError):
            for entry in os.scandir(self.root):
                stamp, _, rest = entry.name.partition("-")
                kind, _, label = rest.partition("-")
                if not (stamp.isdigit() and kind in ("raw", "attachment") and label):
                    continue
                key_id, _, name = label.partition("-")
                if label.startswith("k") and key_id[1:].isdigit() and name:  # digests are hex
                    found.append(TrashEntry(Path(entry.path), float(stamp), kind, None,
                                            int(key_id[1:]), name))
                else:
                    found.append(TrashEntry(Path(entry.path), float(stamp), kind, label,
                                            None, None))
        return found

    def restore(self, entry: TrashEntry) -> None:
        if entry.name is not None:
            target = self.blobs.sealed_path(_FOLDER[entry.kind], entry.name)
        else:
            assert entry.digest is not None
            target = self.path_of(entry.kind, entry.digest)
        if target.exists():  # written again meanwhile (same name, same content)
            with suppress(FileNotFoundError):
                entry.path.unlink()
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileNotFoundError):
            os.replace(entry.path, target)


def _order(file: tuple[str, DataKey | None]) -> tuple[str, int]:
    return file[0], file[1].id if file[1] is not None else 0


def _fsync_dir(folder: Path) -> None:
    with suppress(FileNotFoundError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_IN_USE = {"raw": rules_db.raw_in_use, "attachment": rules_db.attachment_in_use}
_OF_KEY = {"raw": rules_db.raw_of_key, "attachment": rules_db.attachments_of_key}
_FOLDER = {"raw": "raw", "attachment": "attachments"}
SEALED = ".sealed"
Files = dict[str, list[rules_db.FileRef]]  # kind -> files whose rows a batch marked


class Keys:
    """The data keys a transaction of the sweep needs to name sealed files, each unwrapped
    once; none is kept past the transaction (an erasure elsewhere takes effect at once)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._vault = vault_of(session)
        self._open: dict[int, DataKey | None] = {}
        self._in_use: dict[tuple[str, int], set[str]] = {}

    def get(self, key_id: int | None) -> DataKey | None | bool:
        """The key (None: the file is in clear); False when it cannot be had: destroyed by
        an erasure (which deleted its files), or no key file is set (nothing sealed can be
        named: such files are left where they are)."""
        if key_id is None:
            return None
        if self._vault is None:
            return False
        if key_id not in self._open:
            try:
                self._open[key_id] = self._vault.key(self._session, key_id)
            except KeyDestroyed:
                self._open[key_id] = None
        return self._open[key_id] or False

    def names_in_use(self, kind: str, key: DataKey) -> set[str]:
        """The names of the files of this kind sealed with this key that unswept rows still
        refer to: one query per key, not per file."""
        if (kind, key.id) not in self._in_use:
            self._in_use[kind, key.id] = {blob_name(key.secret, digest) for digest in
                                          _OF_KEY[kind](self._session, key.id)}
        return self._in_use[kind, key.id]

    def files(self, refs: Iterable[rules_db.FileRef]) -> list[tuple[str, DataKey | None]]:
        """(digest, key) of each file that can be named."""
        named = []
        for digest, key_id in refs:
            key = self.get(key_id)
            if key is not False:
                named.append((digest, key))  # type: ignore[arg-type]
        return named


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
                lambda s, ids, _: (rules_db.clear_sent(s, ids, now), {}))
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
                 mark: Callable[[Session, list[int], Keys], tuple[int, Files]]) -> int:
        """Run `mark` over `candidates` a batch at a time, one transaction each; the rows
        marked. `mark` returns (rows marked, {kind: files whose rows it marked})."""
        done, seen = 0, set[int]()
        while True:
            with self._sessions.begin() as session:
                lock_for_transaction(session, _SWEEP_LOCK)
                ids = [i for i in candidates(session, self._rules.batch) if i not in seen]
                if not ids:
                    return done
                seen.update(ids)
                keys = Keys(session)
                marked, files = mark(session, ids, keys)
                for kind, found in files.items():
                    unused = set(found) - _IN_USE[kind](session, list(set(found)))
                    self.trash.condemn(kind, sorted(keys.files(unused), key=_order))
                failpoint(f"retention-before-commit:{rule}")
            failpoint(f"retention-after-commit:{rule}")
            done += marked

    def _files(self, cutoff: datetime, outcomes: tuple[str, ...], now: datetime) -> int:
        rejected = outcomes == rules_db.REJECTED

        def mark(session: Session, ids: list[int], keys: Keys) -> tuple[int, Files]:
            raw = rules_db.mark_raw(session, ids, now)
            # Ingest writes the attachments of a mail it then ignores, with no row to name
            # them: only the mail itself says which they are (sealed with the mail's key).
            parts = [(part, key_id) for digest, key_id in raw
                     for part in self._attachments_of(digest, keys.get(key_id))] \
                if rejected else []
            return len(raw), {"raw": raw, "attachment": parts}

        rule = "raw_mail" if outcomes == rules_db.STORED else "rejected_mail"
        return self._batches(
            rule, lambda s, limit: rules_db.raw_candidates(s, outcomes, cutoff, limit), mark)

    def _attachments_of(self, digest: str, key: DataKey | None | bool) -> list[str]:
        """The digests of a stored raw mail's attachments; none when it is gone or unreadable."""
        if key is False:
            return []
        try:
            raw = self.trash.blobs.get_raw(digest, key)  # type: ignore[arg-type]
        except (OSError, EOFError, ValueError, KeyProblem):  # gone, not gzip, does not open
            return []
        try:
            return [part.sha256 for part in parse(raw, Limits()).attachments]
        except RejectedMail:
            return []

    def _attachments(self, cutoff: datetime, now: datetime) -> int:
        def mark(session: Session, ids: list[int], _: Keys) -> tuple[int, Files]:
            files = rules_db.mark_attachments(session, ids, now)
            return len(files), {"attachment": files}

        return self._batches("attachments",
                             lambda s, limit: rules_db.attachment_candidates(s, cutoff, limit),
                             mark)

    def _closed(self, cutoff: datetime, now: datetime, counts: SweepCounts) -> None:
        def mark(session: Session, ids: list[int], _: Keys) -> tuple[int, Files]:
            raw: list[rules_db.FileRef] = []
            attachments: list[rules_db.FileRef] = []
            done = 0
            for ticket_id in ids:
                result = rules_db.anonymise_ticket(session, ticket_id, now)
                if result is not None:
                    done += 1
                    files = rules_db.files_marked_on_ticket(session, ticket_id, result.raw,
                                                            result.attachments)
                    raw += files[0]
                    attachments += files[1]
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
            lock_for_transaction(session, _SWEEP_LOCK)
            keys = Keys(session)
            for entry in entries:
                in_use = self._in_use(session, keys, entry)
                if in_use is None:
                    continue  # sealed, and no key file to name it with: left as it is
                if in_use:
                    self.trash.restore(entry)
                    counts.files_restored += 1
                elif latest - entry.stamp >= TRASH_GRACE:
                    with suppress(FileNotFoundError):
                        entry.path.unlink()
                        counts.files_removed += 1

    def _in_use(self, session: Session, keys: Keys, entry: TrashEntry) -> bool | None:
        """Whether an unswept row still names this trashed file; None when that cannot be
        told (a sealed file while no key file is set)."""
        if entry.digest is not None:
            return bool(_IN_USE[entry.kind](session, [(entry.digest, None)]))
        key = keys.get(entry.key_id)
        if key is False:
            return None if vault_of(session) is None else False  # destroyed: never named again
        assert isinstance(key, DataKey)
        return entry.name in keys.names_in_use(entry.kind, key)


LEDGER_PRUNE_EVERY = 600.0  # seconds between two prunes of the loop ledger by one daemon
LEDGER_PRUNE_LOCK = "ticketd loop ledger prune"


def ledger_kept(settings: Settings) -> timedelta:
    """How long the loop ledger's rows matter under these [loops] windows."""
    loops = settings.loops
    return LoopPolicy(per_ticket_window=loops.per_ticket_window,
                      per_ticket_day_window=loops.per_ticket_day_window,
                      per_address_window=loops.per_address_window,
                      repeat_window=loops.repeat_window).kept


def prune_loop_ledger(sessions: sessionmaker[Session], kept: timedelta,
                      now: datetime | None = None, *, apply: bool = True) -> int | None:
    """Remove the loop ledger's rows older than `kept` (storage/loops.py), in one short
    transaction of its own; the rows removed (with apply=False only counted). On
    PostgreSQL one daemon or command at a time prunes: one that finds another at it skips
    this pass and returns None. The check of each mail only reads the ledger, so pruning
    never makes a mail wait."""
    with sessions.begin() as session:
        if not try_lock_for_transaction(session, LEDGER_PRUNE_LOCK):
            return None
        before = (now or utcnow()) - kept
        return (loop_ledger.prune if apply else loop_ledger.expired)(session, before)


@dataclass(frozen=True)
class KeeperPlan:
    """What one pass of the records task does: which sweeper (None: no rule set), how long it
    pauses between passes, how long between two sweeps, and how long the loop ledger keeps
    its rows (None: it is not pruned here) and how often it is pruned."""

    sweeper: RetentionSweeper | None
    seal_every: float
    sweep_every: float
    ledger_kept: timedelta | None = None
    prune_every: float = LEDGER_PRUNE_EVERY

    @classmethod
    def of(cls, settings: Settings, sessions: sessionmaker[Session],
           blobs: BlobStore) -> KeeperPlan:
        rules = RetentionRules.from_settings(settings)
        sweeper = RetentionSweeper(sessions, blobs, rules) if rules.any else None
        return cls(sweeper, settings.audit.seal_interval.total_seconds(),
                   settings.retention.interval.total_seconds(), ledger_kept(settings))


class RecordsKeeper:
    """The daemon task: chain new events every `seal_every`, sweep every `sweep_every`, prune
    the loop ledger every `prune_every`. The plan is asked for at each pass, so a reload
    applies its rules and intervals from the next pass on; `wake` (set by a reload) ends the
    pause at once, so that a shorter interval does not wait out the old one."""

    def __init__(self, sessions: sessionmaker[Session], plan: Callable[[], KeeperPlan]) -> None:
        self._sessions = sessions
        self._plan = plan

    @classmethod
    def following(cls, settings: Callable[[], Settings], sessions: sessionmaker[Session],
                  blobs: BlobStore) -> RecordsKeeper:
        """The plan of the settings in force at each pass."""
        return cls(sessions, lambda: KeeperPlan.of(settings(), sessions, blobs))

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        wake = wake or asyncio.Event()
        last_sweep = last_prune = float("-inf")
        while not stop.is_set():
            wake.clear()
            plan = self._plan()
            await self._guarded("seal", lambda: audit.seal(self._sessions))
            if plan.sweeper is not None and time.monotonic() - last_sweep >= plan.sweep_every:
                last_sweep = time.monotonic()
                await self._guarded("retention sweep", plan.sweeper.run_once)
            kept = plan.ledger_kept
            if kept is not None and time.monotonic() - last_prune >= plan.prune_every:
                last_prune = time.monotonic()
                await self._guarded("loop ledger prune",
                                    partial(prune_loop_ledger, self._sessions, kept))
            await pause(stop, wake, plan.seal_every)

    async def _guarded(self, what: str, work: Callable[[], object]) -> None:
        try:
            await asyncio.to_thread(work)
        except Exception as err:  # noqa: BLE001 - the database may be down for a while
            log.error("%s failed error=%s", what, type(err).__name__)

