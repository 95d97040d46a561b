"""Identifiers from hostile or odd senders (issue: senders who attack the desk), on SQLite
and PostgreSQL: a huge Message-ID or References chain is stored bounded and never
quarantines a complaint; a reused Message-ID keeps both mails; a re-delivery stays one."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from daemon.ingest import Ingestor, IngestPolicy
from parsers.headers import MAX_ID_CHARS, MAX_REFERENCES
from storage import db
from storage.blobs import BlobStore
from storage.models import IngestRecord, Message, StoredAttachment, Ticket
from tests.support.mails import mail

POLICY = IngestPolicy(support_addresses=frozenset({"support@casino.test"}))


@pytest.fixture
def ingestor(db_url: str, tmp_path: Path) -> Ingestor:
    sessions = db.session_factory(db.make_engine(db_url))
    return Ingestor(sessions, BlobStore(tmp_path / "state"), POLICY)


def _count(ingestor: Ingestor, model) -> int:  # noqa: ANN001
    with ingestor.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def _raw(message_id: str, *, references: str = "", in_reply_to: str = "",
         body: str = "Please refund my deposit of 100 EUR.") -> bytes:
    """Written by hand: a library would refuse to write or fold such a header."""
    lines = ["From: Player <player@mail.test>", "To: support@casino.test",
             "Subject: Refund request", "Date: Fri, 20 Nov 2026 12:00:00 +0000",
             f"Message-ID: {message_id}"]
    lines += [f"References: {references}"] if references else []
    lines += [f"In-Reply-To: {in_reply_to}"] if in_reply_to else []
    return ("\r\n".join(lines) + f"\r\n\r\n{body}\r\n").encode()


def test_a_5000_character_message_id_opens_a_ticket_and_still_threads(ingestor: Ingestor) -> None:
    long_id = "<" + "x" * 5000 + "@mail.test>"
    first = ingestor.ingest(_raw(long_id), "test")
    assert first.outcome == "ticket", first.reason
    with ingestor.sessions() as session:
        stored = session.scalar(select(Message.header_message_id))
        logged = session.scalar(select(IngestRecord.header_message_id))
    assert stored is not None and len(stored) <= MAX_ID_CHARS
    assert logged == stored
    reply = _raw("<reply@mail.test>", in_reply_to=long_id, body="Any news?")
    second = ingestor.ingest(reply, "test")
    assert (second.outcome, second.ticket_number) == ("follow_up", first.ticket_number)


def test_references_with_10000_ids_are_stored_bounded(ingestor: Ingestor) -> None:
    chain = " ".join(f"<id{i}.{'y' * 40}@mail.test>" for i in range(10_000))
    result = ingestor.ingest(_raw("<chain@mail.test>", references=chain), "test")
    assert result.outcome == "ticket", result.reason
    with ingestor.sessions() as session:
        references = session.scalar(select(Message.references))
    ids = references.split()
    assert len(ids) == MAX_REFERENCES
    assert ids[0] == f"id0.{'y' * 40}@mail.test"  # the thread's root is kept
    assert ids[-1] == f"id9999.{'y' * 40}@mail.test"  # and the newest


def test_two_mails_with_one_message_id_and_sender_but_other_text_are_both_kept(
    ingestor: Ingestor,
) -> None:
    first = ingestor.ingest(mail(message_id="<reused@mail.test>", body="My refund, please."),
                            "test")
    second = ingestor.ingest(mail(message_id="<reused@mail.test>",
                                  body="Also: my account was blocked."), "test")
    assert not second.duplicate
    assert second.outcome in ("ticket", "follow_up")
    assert first.outcome == "ticket"
    assert _count(ingestor, Message) == 2
    with ingestor.sessions() as session:
        texts = session.scalars(select(Message.full_text).order_by(Message.id)).all()
    assert "blocked" in texts[1]


def test_the_same_mail_delivered_again_with_other_trace_headers_stays_one(
    ingestor: Ingestor,
) -> None:
    raw = mail(message_id="<once@mail.test>")
    first = ingestor.ingest(b"Received: from a by mx1; Fri, 20 Nov 2026 12:00:01 +0000\r\n"
                            + raw, "test")
    again = (b"Received: from a by mx2; Fri, 20 Nov 2026 12:05:00 +0000\r\n"
             b"Delivered-To: support@casino.test\r\n" + raw)
    second = ingestor.ingest(again, "test")
    assert second.duplicate and second.ticket_number == first.ticket_number
    assert (_count(ingestor, Ticket), _count(ingestor, Message)) == (1, 1)


def test_copies_in_one_batch_and_in_the_next_are_each_one_mail(ingestor: Ingestor) -> None:
    """The ingest log is read once per batch: a copy later in the same batch is still seen
    (the transaction's own write), and so is one of an earlier batch (the batch's read)."""
    raw = mail(message_id="<batched@mail.test>")
    hop = b"Received: from a by mx%d; Fri, 20 Nov 2026 12:00:0%d +0000\r\n"
    first, copy = ingestor.ingest_many([(hop % (1, 1) + raw, "1"), (hop % (2, 2) + raw, "2")])
    assert (first.duplicate, copy.duplicate) == (False, True)
    later, again = ingestor.ingest_many([(hop % (3, 3) + raw, "3"), (hop % (1, 1) + raw, "4")])
    assert later.duplicate and again.duplicate
    assert {copy.ticket_number, later.ticket_number, again.ticket_number} == {first.ticket_number}
    assert (_count(ingestor, Ticket), _count(ingestor, Message)) == (1, 1)


def test_the_same_mail_forwarded_with_fields_a_hop_adds_stays_one(ingestor: Ingestor) -> None:
    raw = mail(message_id="<forwarded@mail.test>")
    first = ingestor.ingest(raw, "test")
    again = (b"X-Received: by 2002:a05:6000:1 with SMTP id x; Fri, 20 Nov 2026 12:05:00\r\n"
             b"X-Envelope-To: desk@casino.test\r\nX-Forwarded-To: support@casino.test\r\n"
             b"X-MS-Exchange-Organization-AuthSource: mx.relay.test\r\n"
             b"DKIM-Signature: v=1; a=rsa-sha256; d=relay.test; s=s1;\r\n\tbh=abc=; b=def=\r\n"
             b"ARC-Seal: i=1; a=rsa-sha256; d=relay.test; s=s1; cv=none; b=ghi=\r\n"
             b"ARC-Authentication-Results: i=1; relay.test; dkim=pass\r\n" + raw)
    second = ingestor.ingest(again, "test")
    assert second.duplicate and second.ticket_number == first.ticket_number
    assert (_count(ingestor, Ticket), _count(ingestor, Message)) == (1, 1)


def test_one_message_id_and_sender_with_another_subject_is_a_mail_of_its_own(
    ingestor: Ingestor,
) -> None:
    ingestor.ingest(mail(message_id="<same@mail.test>", subject="Refund"), "test")
    second = ingestor.ingest(mail(message_id="<same@mail.test>", subject="Blocked account"),
                             "test")
    assert not second.duplicate
    assert _count(ingestor, Message) == 2


def test_an_attachment_with_a_300_character_content_type_keeps_the_complaint(
    ingestor: Ingestor,
) -> None:
    long_type = "application/x-" + "z" * 300
    raw = ("From: Player <player@mail.test>\r\nTo: support@casino.test\r\n"
           "Subject: Refund request\r\nMessage-ID: <typed@mail.test>\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
           "Content-Type: text/plain\r\n\r\nPlease refund my deposit.\r\n--b\r\n"
           f"Content-Type: {long_type}\r\nContent-Disposition: attachment; filename=a.bin\r\n"
           "\r\nabc\r\n--b--\r\n").encode()
    result = ingestor.ingest(raw, "test")
    assert result.outcome == "ticket", result.reason
    with ingestor.sessions() as session:
        assert session.scalar(select(StoredAttachment.content_type)) == "application/octet-stream"


@pytest.mark.parametrize(("from_lines", "why"), [
    (("From: ",), "empty From"),
    (("From: undisclosed-recipients:;",), "empty group"),
    ((), "no From header"),
    (("From: <" + "a" * 400 + "@mail.test>",), "longer than 320"),
])
def test_a_mail_whose_sender_cannot_be_read_is_quarantined_with_the_reason(
    ingestor: Ingestor, from_lines: tuple[str, ...], why: str,
) -> None:
    raw = ("\r\n".join([*from_lines, "To: support@casino.test", "Subject: Where is my money",
                        "Reply-To: someone@mail.test"])
           + "\r\n\r\nI deposited 100 EUR.\r\n").encode()
    result = ingestor.ingest(raw, "test")
    assert result.outcome == "quarantined"
    assert "no readable sender" in result.reason and why in result.reason
    assert _count(ingestor, Ticket) == 0  # and so no acknowledgement to anyone


def test_a_byte_order_mark_before_the_headers_is_read_past(ingestor: Ingestor) -> None:
    result = ingestor.ingest(b"\xef\xbb\xbf" + mail(sender="Player <player@mail.test>"), "test")
    assert result.outcome == "ticket"
    with ingestor.sessions() as session:
        assert session.scalar(select(Message.sender)) == "player@mail.test"
