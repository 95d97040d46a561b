"""The ingest step end to end on SQLite and PostgreSQL: one mail, one transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from daemon.ingest import IngestPolicy, Ingestor, TemporaryFailure
from storage import db, queries
from storage.blobs import BlobStore
from storage.models import Event, IngestRecord, Message, Ticket
from tests.support.mails import PNG, mail

POLICY = IngestPolicy(support_addresses=frozenset({"support@casino.test"}))


@pytest.fixture
def ingestor(db_url: str, tmp_path: Path) -> Ingestor:
    sessions = db.session_factory(db.make_engine(db_url))
    return Ingestor(sessions, BlobStore(tmp_path / "state"), POLICY)


def _count(ingestor: Ingestor, model) -> int:  # noqa: ANN001
    with ingestor.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_complaint_becomes_a_ticket_with_its_attachment_on_disk(ingestor: Ingestor) -> None:
    raw = mail(attachments=(("screen.png", "image/png", PNG),))
    result = ingestor.ingest(raw, "test")
    assert (result.outcome, result.duplicate) == ("ticket", False)
    with ingestor.sessions() as session:
        doc = queries.ticket_as_dict(queries.ticket_by_ref(session, result.ticket_number))
    assert doc["requester"] == "player@mail.test"
    assert doc["category"] == "refund"
    [message] = doc["messages"]
    assert (message["direction"], message["kind"]) == ("in", "complaint")
    assert "refund my deposit" in message["text"]
    [att] = message["attachments"]
    assert (att["filename"], att["content_type"], att["size"]) == ("screen.png", "image/png", len(PNG))
    assert ingestor.blobs.get_attachment(att["sha256"]) == PNG


def test_the_raw_mail_is_kept_byte_exact(ingestor: Ingestor) -> None:
    raw = mail()
    ingestor.ingest(raw, "test")
    with ingestor.sessions() as session:
        digest = session.scalar(select(Message.raw_sha256))
    assert ingestor.blobs.get_raw(digest) == raw


def test_the_same_mail_twice_is_stored_once(ingestor: Ingestor) -> None:
    raw = mail()
    first = ingestor.ingest(raw, "test")
    second = ingestor.ingest(raw, "test")
    assert second.duplicate and second.ticket_number == first.ticket_number
    assert _count(ingestor, Ticket) == 1
    assert _count(ingestor, Message) == 1
    assert _count(ingestor, IngestRecord) == 1


def test_a_reply_naming_a_stored_message_joins_its_ticket(ingestor: Ingestor) -> None:
    first = ingestor.ingest(mail(message_id="<first@mail.test>"), "test")
    reply = mail(subject="Re: Refund request", body="Any news?", in_reply_to="<first@mail.test>")
    second = ingestor.ingest(reply, "test")
    assert second.outcome == "follow_up"
    assert second.ticket_number == first.ticket_number
    assert _count(ingestor, Ticket) == 1


def test_an_unparseable_mail_is_quarantined_with_its_reason_and_kept(ingestor: Ingestor) -> None:
    raw = b"\x00\x01\x02 this is not a mail at all \xff" * 10
    result = ingestor.ingest(raw, "test")
    assert result.outcome == "quarantined" and result.reason
    with ingestor.sessions() as session:
        record = session.scalar(select(IngestRecord))
        assert (record.outcome, record.reason) == ("quarantined", result.reason)
        assert session.scalar(select(Event.kind)) == "quarantined"
    assert ingestor.blobs.get_raw(record.raw_sha256) == raw
    assert _count(ingestor, Ticket) == 0


def test_mail_from_our_own_address_is_ignored_not_ticketed(ingestor: Ingestor) -> None:
    result = ingestor.ingest(mail(sender="Casino Support <support@casino.test>"), "test")
    assert (result.outcome, result.reason) == ("ignored", "sender is our own address support@casino.test")
    assert _count(ingestor, Ticket) == 0


def test_an_unreachable_database_is_a_temporary_failure(tmp_path: Path) -> None:
    engine = db.make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    broken = Ingestor(db.session_factory(engine), BlobStore(tmp_path), POLICY)
    with pytest.raises(TemporaryFailure):
        broken.ingest(mail(), "test")


def test_a_full_disk_is_a_temporary_failure_and_records_nothing(ingestor: Ingestor, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the store should be")
    ingestor.blobs = BlobStore(blocked)
    with pytest.raises(TemporaryFailure):
        ingestor.ingest(mail(), "test")
    assert _count(ingestor, IngestRecord) == 0


def _russian_complaint_cp1251() -> tuple[bytes, bytes, bytes]:
    """A phone client's mail: windows-1251 8-bit body, encoded-word subject, a screenshot and a
    receipt, the receipt's Cyrillic name in RFC 2231 form."""
    from email.header import Header
    from email.mime.application import MIMEApplication
    from email.mime.image import MIMEImage
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    screenshot = PNG + bytes(range(256)) * 40
    receipt = b"%PDF-1.4\n" + bytes(range(255, -1, -1)) * 30 + b"\n%%EOF\n"
    msg = MIMEMultipart()
    msg["From"] = Header("Сергей Иванов", "windows-1251").encode() + " <sergey@mail.test>"
    msg["To"] = "support@casino.test"
    msg["Subject"] = Header("Возврат средств за депозит", "windows-1251").encode()
    msg["Message-ID"] = "<cp1251-1@mail.test>"
    body = MIMEText("Здравствуйте! Деньги списаны, но депозит не зачислен. Прошу возврат.",
                    "plain", "windows-1251")
    body.replace_header("Content-Transfer-Encoding", "8bit")
    body.set_payload("Здравствуйте! Деньги списаны, но депозит не зачислен. Прошу возврат."
                     .encode("windows-1251"))
    msg.attach(body)
    image = MIMEImage(screenshot, "png")
    image.add_header("Content-Disposition", "attachment", filename="screenshot.png")
    msg.attach(image)
    pdf = MIMEApplication(receipt, "pdf")
    pdf.add_header("Content-Disposition", "attachment", filename=("windows-1251", "", "чек.pdf"))
    msg.attach(pdf)
    return msg.as_bytes(), screenshot, receipt


def test_a_russian_cp1251_complaint_with_two_attachments_ends_right(ingestor: Ingestor) -> None:
    raw, screenshot, receipt = _russian_complaint_cp1251()
    assert "Здравствуйте".encode("windows-1251") in raw  # really 8-bit windows-1251 on the wire
    result = ingestor.ingest(raw, "test")
    with ingestor.sessions() as session:
        doc = queries.ticket_as_dict(queries.ticket_by_ref(session, result.ticket_number))
    assert (doc["category"], doc["language"], doc["subject"]) == (
        "refund", "ru", "Возврат средств за депозит")
    [message] = doc["messages"]
    assert "Деньги списаны" in message["text"]
    assert message["from"] == "sergey@mail.test"
    files = {a["filename"]: a for a in message["attachments"]}
    assert set(files) == {"screenshot.png", "чек.pdf"}
    assert ingestor.blobs.get_attachment(files["screenshot.png"]["sha256"]) == screenshot
    assert ingestor.blobs.get_attachment(files["чек.pdf"]["sha256"]) == receipt
    assert files["чек.pdf"]["size"] == len(receipt)


# -- batches: one transaction, a savepoint per mail ----------------------------------------

class _BuggyIngestor(Ingestor):
    """The real ingest, with a bug planted on mails whose subject says so: after the
    ticket's rows are written, so the savepoint must take them back."""

    def _store(self, session, mail, record, automated, *rest):  # noqa: ANN001, ANN002, ANN202
        result = super()._store(session, mail, record, automated, *rest)
        if "BUG" in mail.subject:
            raise KeyError("a bug in storing this mail")
        if "DB DOWN" in mail.subject:
            raise sa_exc.OperationalError("INSERT", {}, Exception("server closed the connection"))
        return result


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_a_batch_is_one_transaction_and_a_reply_joins_a_ticket_of_the_same_batch(
        ingestor: Ingestor) -> None:
    results = ingestor.ingest_many([
        (mail(sender="a@mail.test", message_id="<a1@mail.test>"), "b;uid=1"),
        (mail(sender="b@mail.test", subject="Bet settled wrongly"), "b;uid=2"),
        (mail(sender="a@mail.test", subject="Re: Refund request", body="Any news?",
              in_reply_to="<a1@mail.test>"), "b;uid=3"),
    ])
    assert [r.outcome for r in results] == ["ticket", "ticket", "follow_up"]
    assert results[2].ticket_number == results[0].ticket_number
    assert _count(ingestor, Ticket) == 2 and _count(ingestor, Message) == 3


def test_the_same_mail_twice_in_one_batch_is_stored_once(ingestor: Ingestor) -> None:
    raw = mail()
    first, second = ingestor.ingest_many([(raw, "b;uid=1"), (raw, "b;uid=2")])
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.ticket_number == first.ticket_number
    assert _count(ingestor, IngestRecord) == 1


def test_a_bug_on_one_mail_of_a_batch_quarantines_that_mail_alone(
        db_url: str, tmp_path: Path) -> None:
    sessions = db.session_factory(db.make_engine(db_url))
    buggy = _BuggyIngestor(sessions, BlobStore(tmp_path / "state"), POLICY)
    bad = mail(sender="c@mail.test", subject="BUG here")
    results = buggy.ingest_many([(mail(sender="a@mail.test"), "1"), (bad, "2"),
                                 (mail(sender="b@mail.test"), "3")])
    assert [r.outcome for r in results] == ["ticket", "quarantined", "ticket"]
    assert results[1].reason == "internal error: KeyError"
    assert _count(buggy, Ticket) == 2  # the bad mail's ticket rows were rolled back
    with sessions() as session:
        record = session.scalar(select(IngestRecord).where(IngestRecord.outcome == "quarantined"))
    assert buggy.blobs.get_raw(record.raw_sha256) == bad  # kept for whoever fixes the bug


def test_a_temporary_failure_in_a_batch_records_nothing_and_leaves_no_file(
        db_url: str, tmp_path: Path) -> None:
    sessions = db.session_factory(db.make_engine(db_url))
    store = tmp_path / "state"
    buggy = _BuggyIngestor(sessions, BlobStore(store), POLICY)
    batch = [(mail(sender="a@mail.test", attachments=(("s.png", "image/png", PNG),)), "1"),
             (mail(sender="b@mail.test", subject="DB DOWN"), "2")]
    with pytest.raises(TemporaryFailure):
        buggy.ingest_many(batch)
    assert _count(buggy, IngestRecord) == 0 and _count(buggy, Ticket) == 0
    assert _files(store) == []  # the batch's files were written, then taken back
    ok = Ingestor(sessions, BlobStore(store), POLICY).ingest_many(batch[:1])
    assert ok[0].outcome == "ticket" and len(_files(store)) == 2  # raw mail and attachment
