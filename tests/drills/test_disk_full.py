"""The attachment store's disk fills up (a real tmpfs, ENOSPC) while mail arrives: mail that
cannot be stored stays in the mailbox (not lost, not quarantined as malformed), no ticket is
recorded without its files, no partly written file is left behind, the daemon keeps running
and says why; once space is freed every mail is ingested, each file byte for byte. Once with
the database elsewhere, once on the full disk too (the default layout)."""

from __future__ import annotations

import errno
import gzip
import hashlib
import random
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from storage import db
from storage.blobs import BlobStore
from storage.models import Message, OutboxMessage, StoredAttachment
from tests.outbox.smtp_sink import Sink, SmtpServer, free_port
from tests.support.configs import write_config
from tests.support.db import fresh_sqlite
from tests.support.drill import (
    Daemon,
    all_delivered,
    assert_one_ticket_and_one_ack_per_mail,
    count_tickets,
    wait_until,
)
from tests.support.mails import mail
from tests.support.tmpfs import MiB, SmallDisk

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]
FIRST, LATER = 10, 6  # small mails before the disk fills, and with the large ones after
FREE = 1 * MiB  # left on the disk when it is "full"
LARGE = FREE + FREE // 2  # an attachment that cannot fit, nor can the mail that carries it
# How the full disk shows: in writing a file (errno 28), and in SQLite writing its journal.
FULL = ("No space left on device", "database or disk is full")


def _attachment(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)  # random: gzip cannot make the stored mail smaller


def _temporary_files(root: Path) -> list[Path]:
    return list(root.rglob(".tmp-*"))


def _acks_sent(sessions) -> int:  # noqa: ANN001
    with sessions() as session:
        return len(session.scalars(select(OutboxMessage.id).where(
            OutboxMessage.kind == "ack", OutboxMessage.state == "sent")).all())


def _full_disk_lines(log: str) -> list[str]:
    """The warnings and errors that say the disk is full."""
    return [line for line in log.splitlines() if any(text in line for text in FULL)
            and ("level=warning" in line or "level=error" in line)]


def _blobs_complete(sessions, store: BlobStore) -> bool:  # noqa: ANN001
    """Every stored message has its raw mail and every attachment row its file, intact."""
    with sessions() as session:
        raws = session.scalars(select(Message.raw_sha256).where(Message.direction == "in")).all()
        files = session.scalars(select(StoredAttachment.sha256)).all()
    for digest in raws:
        path = store.raw_path(digest)
        if not path.exists() or hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() \
                != digest:
            return False
    for digest in files:
        path = store.attachment_path(digest)
        if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            return False
    return True


@pytest.mark.timeout(120)  # about 15 s each
@pytest.mark.parametrize("database", ["elsewhere", "on-the-disk"])
def test_a_full_attachment_store_keeps_mail_in_the_mailbox_until_space_is_freed(
        dovecot, small_disk: SmallDisk, sqlite_url: str, tmp_path: Path,  # noqa: ANN001
        database: str) -> None:
    """"on-the-disk" is the default layout: the SQLite file in the storage directory, so the
    disk that is full for the files is full for the database too."""
    rng = random.Random(20261126)
    server = SmtpServer(Sink(), free_port()).start()
    account = dovecot.new_account()
    store_path = small_disk.path / "state"
    store_path.mkdir()
    if database == "on-the-disk":
        sqlite_url = fresh_sqlite(Path(make_url(sqlite_url).database or ""), store_path)
    config = write_config(tmp_path, sqlite_url, account, storage={"path": str(store_path)},
                          smtp={"host": "127.0.0.1", "port": server.port, "tls": "none"},
                          outbox={"interval": "1s"})
    sessions = db.session_factory(db.make_engine(sqlite_url))
    store = BlobStore(store_path)
    payloads: dict[str, bytes] = {}  # filename -> bytes sent
    message_ids: list[str] = []

    def send(n: int, size: int) -> int:
        name = f"scan-{n}.bin"
        payloads[name] = _attachment(rng, size)
        message_ids.append(f"<disk-{n}@mail.test>")
        return dovecot.append(account, mail(
            sender=f"d{n}@mail.test", subject=f"Refund {n}", body="Scan attached.",
            message_id=message_ids[-1],
            attachments=((name, "application/octet-stream", payloads[name]),)))

    daemon = Daemon(config, tmp_path)
    try:
        for n in range(FIRST):
            send(n, 3000)
        daemon.start()
        # All done and recorded, the outbox idle: from here on only the new mail needs space.
        assert wait_until(lambda: _acks_sent(sessions) == FIRST, 30), daemon.log()

        # The disk fills up; then a large mail comes, with small ones before and after it.
        filler = small_disk.fill(leave=FREE if database == "elsewhere" else 0)
        full = small_disk.free()
        uids = {n: send(n, LARGE if n == FIRST + LATER // 2 else 3000)
                for n in range(FIRST, FIRST + LATER)}
        large = uids[FIRST + LATER // 2]

        # The daemon tries, fails on the full disk, says so, and tries again.
        assert wait_until(lambda: len(_full_disk_lines(daemon.log())) >= 2, 30), daemon.log()
        assert daemon.running(), daemon.log()
        # Between attempts: the partly written file is gone and its space free again.
        assert wait_until(lambda: not _temporary_files(store_path)
                          and small_disk.free() >= full - 64 * 1024, 10), (
            _temporary_files(store_path), small_disk.free(), full)
        # The large mail (and whatever was stored with it in one go) is still in the mailbox,
        # not quarantined; no ticket was recorded without its files.
        stuck = set(dovecot.uids(account, "INBOX"))
        assert large in stuck and stuck <= set(uids.values()), (large, stuck)
        assert dovecot.uids(account, "Quarantine") == []
        assert FIRST <= count_tickets(sessions) <= FIRST + LATER - len(stuck)
        assert _blobs_complete(sessions, store)

        filler.unlink()  # space is freed: the next attempt stores everything
        assert wait_until(lambda: all_delivered(sessions, server.handler, FIRST + LATER), 30), (
            count_tickets(sessions), daemon.log()[-3000:])
        assert daemon.running()
        assert daemon.terminate() == 0
    finally:
        daemon.clean_up()
        server.stop()
    assert "Traceback" not in daemon.log(), daemon.log()
    assert_one_ticket_and_one_ack_per_mail(sessions, server.handler, message_ids,
                                           interruptions=0)
    assert dovecot.uids(account, "INBOX") == []
    assert dovecot.uids(account, "Quarantine") == []
    assert not _temporary_files(store_path)
    # Every attachment byte for byte, under the digest of what was sent.
    with sessions() as session:
        stored = {a.filename: a.sha256 for a in session.scalars(select(StoredAttachment))}
    assert set(stored) == set(payloads)
    for name, payload in payloads.items():
        assert stored[name] == hashlib.sha256(payload).hexdigest()
        assert store.get_attachment(stored[name]) == payload
    assert _blobs_complete(sessions, store)


def test_a_blob_that_fills_the_disk_while_written_leaves_nothing_behind(
        small_disk: SmallDisk) -> None:
    """The store writes to a temporary name and renames: ENOSPC in the middle of the write
    removes the partial file, the name never appears, and the space is free again."""
    store = BlobStore(small_disk.path / "state")
    store.put_attachment(b"first")
    payload = random.Random(7).randbytes(LARGE)
    filler = small_disk.fill(leave=FREE)
    before = small_disk.free()
    with pytest.raises(OSError) as failed:
        store.put_attachment(payload)
    assert failed.value.errno == errno.ENOSPC
    digest = hashlib.sha256(payload).hexdigest()
    assert not store.attachment_path(digest).exists()
    assert not _temporary_files(store.root)
    assert small_disk.free() == before
    filler.unlink()
    assert store.put_attachment(payload) == digest
    assert store.get_attachment(digest) == payload
    assert not _temporary_files(store.root)
