"""The mailbox runner stores a fetched batch in transactions bounded by size, and a mail too
large to download is refused without holding up the rest (a Maildir as the mailbox)."""

from __future__ import annotations

import mailbox
from pathlib import Path

from sqlalchemy import func, select

from daemon.ingest import IngestPolicy, Ingestor
from daemon.mailbox import MailboxRunner
from daemon.maildir import MaildirSource
from storage import db
from storage.blobs import BlobStore
from storage.models import IngestRecord, Ticket
from tests.support.mails import PNG, mail

POLICY = IngestPolicy(support_addresses=frozenset({"support@casino.test"}))


def test_a_batch_is_split_by_size_and_every_mail_is_filed(db_url: str, tmp_path: Path) -> None:
    box = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    mails = [mail(sender=f"p{i}@mail.test", subject=f"Refund {i}",
                  attachments=(("s.png", "image/png", PNG * 300),) if i % 3 == 0 else ())
             for i in range(12)]
    for raw in mails:
        box.add(raw)
    huge = mail(sender="big@mail.test", attachments=(("big.bin", "application/octet-stream",
                                                      b"x" * 300_000),))
    box.add(huge)
    sessions = db.session_factory(db.make_engine(db_url))
    source = MaildirSource(tmp_path / "Maildir", max_bytes=200_000)
    groups: list[list[int]] = []  # the sizes of the mails of each transaction
    ingestor = Ingestor(sessions, BlobStore(tmp_path / "state"), POLICY)
    many = ingestor.ingest_many

    def counting(batch):  # noqa: ANN001, ANN202 - the real call, with the group sizes noted
        groups.append([len(raw) for raw, *_ in batch])
        return many(batch)

    ingestor.ingest_many = counting  # type: ignore[method-assign]
    largest = max(len(raw) for raw in mails)
    runner = MailboxRunner(source, ingestor, sessions, name="maildir", batch_size=50,
                           batch_bytes=3 * largest)
    stats = runner.drain()
    assert (stats.stored, stats.quarantined) == (12, 1)
    assert len(groups) > 1 and sum(map(len, groups)) == 12  # split, none lost
    assert all(sum(sizes) <= 3 * largest or len(sizes) == 1 for sizes in groups)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 12
        reasons = session.scalars(select(IngestRecord.reason)
                                  .where(IngestRecord.outcome == "quarantined")).all()
    assert len(reasons) == 1 and reasons[0].startswith("message too large")
    assert len(box.get_folder("Processed")) == 12 and len(box.get_folder("Quarantine")) == 1
    assert len(box) == 0


def test_a_maildir_mail_is_delivered_when_its_file_was_written(tmp_path: Path) -> None:
    """The Maildir's INTERNALDATE: the file's delivery time (MaildirMessage.get_date)."""
    import os
    from datetime import UTC, datetime

    box = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    key = box.add(mail(message_id="<md-date@mail.test>"))
    written = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    os.utime(os.path.join(box._path, box._lookup(key)),  # noqa: SLF001
             (written.timestamp(), written.timestamp()))
    source = MaildirSource(tmp_path / "Maildir")
    [fetched] = source.fetch(source.pending(10))
    assert fetched.delivered_at == written
    assert box.get_message(key).get_date() == written.timestamp()


def test_maildir_mails_are_taken_in_the_order_they_were_delivered(tmp_path: Path) -> None:
    """Maildir names carry the delivery's microseconds unpadded (M99999, then M100000 in the
    same second): the runner takes the earlier first, so a follow-up never overtakes the mail
    it answers. Names as Dovecot, Postfix and Python's mailbox write them."""
    root = tmp_path / "Maildir"
    mailbox.Maildir(str(root), create=True)
    names = ["1700000000.M99999P7Q1.mx", "1700000000.M100000P7Q2.mx",
             "1700000000.V803I1a2bM654321.mx", "1700000001.M5P7Q3.mx"]
    for n, name in enumerate(reversed(names)):
        (root / "new" / name).write_bytes(mail(message_id=f"<order-{n}@mail.test>"))
    source = MaildirSource(root)
    taken = [source._keys[uid] for uid in source.pending(10)]  # noqa: SLF001
    assert taken == names
