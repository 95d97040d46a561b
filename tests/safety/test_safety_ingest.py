"""Safety before classification through the whole ingest, on SQLite and PostgreSQL: spam from
our MTA opens nothing, malware found by a real clamd never reaches an agent, and a player in
trouble is taken up on the 1-hour clock whatever the ticket was."""

from __future__ import annotations

import asyncio
import base64
import email
from dataclasses import replace
from datetime import timedelta
from email.policy import default
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from daemon.ingest import Ingestor, IngestPolicy, TemporaryFailure
from daemon.outbox import OutboxSender
from daemon.responsible import may_automate
from daemon.safety import Screener
from daemon.scan import ClamdScanner
from daemon.sla import SlaOptions
from daemon.team import Agent, TeamPolicy
from parsers.spam import SpamPolicy
from responders.acks import AckPolicy
from responders.identity import Identity
from responders.loops import LoopPolicy
from responders.rendering import Templates
from storage import db
from storage.blobs import BlobStore
from storage.models import (
    Event,
    IngestRecord,
    OutboxMessage,
    SlaClock,
    StoredAttachment,
    Ticket,
    utcnow,
)
from storage.spam import list_spam
from tests.outbox.smtp_sink import Sink, SmtpServer, free_port, transport_to
from tests.support.clamd import EICAR, ClamdServer
from tests.support.mails import PNG, mail

SUPPORT = "support@casino.test"
KEYS = (b"safety-test-key-0123456789abcdef",)
OUR_HOP = "from mx.mail.test (mx.mail.test [192.0.2.9]) by mx1.casino.test (Postfix) with ESMTPS"
THEIR_HOP = "from [10.1.1.1] by mx.mail.test (Postfix) with ESMTPSA"
DESK = Identity(SUPPORT, "Casino Support", KEYS, Templates())
TEAM = TeamPolicy(
    DESK,
    agents={"anna@casino.test": Agent("anna@casino.test", "Anna", ("payments",)),
            "rita@casino.test": Agent("rita@casino.test", "Rita", ("responsible_gaming",))},
    routing={"refund": "payments", "self_exclusion": "responsible_gaming"},
)


def make(db_url: str, tmp_path: Path, screener: Screener | None = None) -> Ingestor:
    ack = AckPolicy(DESK)
    policy = IngestPolicy(support_addresses=frozenset({SUPPORT}), keys=KEYS, ack=ack, team=TEAM,
                          agents=frozenset(TEAM.agents), sla=SlaOptions(), spam=SpamPolicy())
    sessions = db.session_factory(db.make_engine(db_url))
    return Ingestor(sessions, BlobStore(tmp_path / "state"), policy, screener)


def hops(raw: bytes, *above: tuple[str, str], below: tuple[tuple[str, str], ...] = ()) -> bytes:
    """`raw` as our MTA delivers it: the sender's hop, then ours, with headers around them."""
    head = [*above, ("Received", OUR_HOP), *below, ("Received", THEIR_HOP)]
    return b"".join(f"{n}: {v}\r\n".encode() for n, v in head) + raw


def count(ingestor: Ingestor, model: type, *where: object) -> int:
    with ingestor.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def kinds(ingestor: Ingestor, kind: str) -> list[Event]:
    with ingestor.sessions() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind)))


def deliver(ingestor: Ingestor) -> list:  # noqa: ANN401 - tests.outbox.smtp_sink.Received
    server = SmtpServer(Sink(), free_port()).start()
    try:
        sender = OutboxSender(ingestor.sessions, transport_to(server.port), ops_address=None)
        asyncio.run(sender.drain())
        return list(server.handler.received)
    finally:
        server.stop()


# --- spam ---------------------------------------------------------------------------------

def test_spam_from_our_mta_opens_nothing_and_is_kept(db_url: str, tmp_path: Path) -> None:
    ingestor = make(db_url, tmp_path)
    raw = hops(mail(subject="Cheap pills", body="Buy now, refund guaranteed"),
               ("X-Spam-Flag", "YES"), ("X-Spam-Status", "Yes, score=22.1 required=5.0"))
    result = ingestor.ingest(raw, "inbox;uid=1")
    assert (result.outcome, result.ticket_number) == ("spam", None)
    assert "x-spam-flag: YES" in result.reason
    assert count(ingestor, Ticket) == 0
    assert count(ingestor, OutboxMessage) == 0  # no acknowledgement, no notification
    assert count(ingestor, SlaClock) == 0
    assert ingestor.blobs.get_raw(ingest_digest(ingestor, result.key)) == raw  # kept whole
    with ingestor.sessions() as session:
        [kept] = list_spam(session)
    assert kept.reason == result.reason and kept.source == "inbox;uid=1"
    assert ingestor.ingest(raw, "again").duplicate  # the same mail twice stays one


@pytest.mark.parametrize("from_line", ["From: undisclosed-recipients:;\r\n", ""])
def test_spam_with_an_unreadable_from_goes_to_junk_not_to_the_quarantine(
        db_url: str, tmp_path: Path, from_line: str) -> None:
    ingestor = make(db_url, tmp_path)
    raw = hops(f"{from_line}To: support@casino.test\r\nSubject: You won\r\n"
               "Message-ID: <junk-1@spam.test>\r\n\r\nClaim your prize.\r\n".encode(),
               ("X-Spam-Flag", "YES"))
    assert ingestor.ingest(raw, "inbox;uid=9").outcome == "spam"


def test_rspamd_reject_is_spam_too(db_url: str, tmp_path: Path) -> None:
    ingestor = make(db_url, tmp_path)
    raw = hops(mail(), below=(("X-Rspamd-Action", "reject"),
                              ("X-Spamd-Result", "default: True [17.2 / 15.0]")))
    assert ingestor.ingest(raw, "t").outcome == "spam"


def test_a_spam_header_the_player_wrote_changes_nothing(db_url: str, tmp_path: Path) -> None:
    ingestor = make(db_url, tmp_path)
    # Below the sender's hop: written before our MTA saw the mail.
    raw = hops(mail(headers={"X-Spam-Flag": "YES", "X-Rspamd-Action": "reject"}))
    result = ingestor.ingest(raw, "t")
    assert result.outcome == "ticket"
    assert count(ingestor, OutboxMessage, OutboxMessage.kind == "ack") == 1
    # And a player's "NO" does not clear what our filter said.
    spam = hops(mail(sender="b@mail.test", headers={"X-Spam-Flag": "NO"}),
                ("X-Spam-Status", "Yes, score=30"))
    assert ingestor.ingest(spam, "t").outcome == "spam"


def test_released_spam_is_ingested_as_a_normal_mail(db_url: str, tmp_path: Path) -> None:
    ingestor = make(db_url, tmp_path)
    raw = hops(mail(subject="Refund please", body="Please refund my deposit."),
               ("X-Spam-Flag", "YES"))
    spam = ingestor.ingest(raw, "t")
    released = ingestor.ingest_many([(raw, "release")], released=True)[0]
    assert released.outcome == "ticket" and released.ticket_number
    assert count(ingestor, OutboxMessage, OutboxMessage.kind == "ack") == 1
    assert count(ingestor, SlaClock) == 2
    assert count(ingestor, IngestRecord, IngestRecord.ingest_key == spam.key) == 1
    assert len(kinds(ingestor, "spam_released")) == 1
    with ingestor.sessions() as session:
        assert list_spam(session) == []
    again = ingestor.ingest_many([(raw, "release")], released=True)[0]
    assert again.duplicate and count(ingestor, Ticket) == 1


def test_a_release_while_clamd_is_away_keeps_the_spam(db_url: str, tmp_path: Path,
                                                       clamd: ClamdServer) -> None:
    raw = hops(mail(subject="Refund please", body="Please refund my deposit.",
                    attachments=(("s.png", "image/png", PNG),)), ("X-Spam-Flag", "YES"))
    away = ClamdScanner(socket_path=tmp_path / "gone.sock", timeout=2)
    held_by = make(db_url, tmp_path, Screener(away, "hold"))
    spam = held_by.ingest(raw, "t")
    assert spam.outcome == "spam"
    [held] = held_by.ingest_many([(raw, "release")], released=True)
    assert held.outcome == "held" and "not scanned" in held.reason
    # Nothing of the spam record was touched: it is still listed, for a later release.
    assert count(held_by, IngestRecord, IngestRecord.ingest_key == spam.key) == 1
    with held_by.sessions() as session:
        [kept] = list_spam(session)
    assert kept.ingest_key == spam.key
    assert kinds(held_by, "spam_released") == [] and count(held_by, Ticket) == 0
    # With clamd back, the same release opens the ticket.
    scanner = ClamdScanner(socket_path=clamd.socket_path, timeout=10)
    released_by = make(db_url, tmp_path, Screener(scanner, "hold"))
    [released] = released_by.ingest_many([(raw, "release")], released=True)
    assert released.outcome == "ticket" and released.ticket_number
    assert len(kinds(released_by, "spam_released")) == 1
    with released_by.sessions() as session:
        assert list_spam(session) == []


def ingest_digest(ingestor: Ingestor, key: str) -> str:
    with ingestor.sessions() as session:
        return session.scalar(select(IngestRecord.raw_sha256)
                              .where(IngestRecord.ingest_key == key)) or ""


# --- malware ------------------------------------------------------------------------------

def attachments_of(content: bytes) -> list[tuple[str, bytes]]:
    msg = email.message_from_bytes(content, policy=default)
    return [(part.get_filename() or "", part.get_content() if isinstance(part.get_content(),
             bytes) else part.get_content().encode()) for part in msg.iter_attachments()]


def test_eicar_is_never_forwarded_and_the_ack_names_it(db_url: str, tmp_path: Path,
                                                       clamd: ClamdServer) -> None:
    ingestor = make(db_url, tmp_path, Screener(ClamdScanner(socket_path=clamd.socket_path)))
    raw = mail(subject="Refund of my deposit", body="Invoice and screenshot attached.",
               attachments=(("invoice.com", "application/octet-stream", EICAR),
                            ("screenshot.png", "image/png", PNG)))
    result = ingestor.ingest(raw, "t")
    assert result.outcome == "ticket"
    sent = deliver(ingestor)
    to_agent = [m for m in sent if "anna@casino.test" in m.rcpt_tos]
    to_player = [m for m in sent if "player@mail.test" in m.rcpt_tos]
    assert len(to_agent) == 1 and len(to_player) == 1
    for envelope in sent:  # neither the bytes nor their base64 reach anyone
        assert EICAR not in envelope.content
        assert base64.b64encode(EICAR)[:40] not in envelope.content.replace(b"\r\n", b"")
        assert all(data != EICAR for _, data in attachments_of(envelope.content))
    assert [name for name, _ in attachments_of(to_agent[0].content)] == ["screenshot.png"]
    ack = email.message_from_bytes(to_player[0].content, policy=default)
    text = ack.get_body(("plain",)).get_content()
    refused = text.split("did not accept", 1)[1]
    assert "invoice.com" in refused and "screenshot.png" not in refused
    [event] = kinds(ingestor, "attachment_refused")
    assert event.data["filename"] == "invoice.com" and event.data["quarantined"] is True
    assert event.data["reason"].startswith("infected: ")
    digest = event.data["sha256"]
    assert ingestor.blobs.get_quarantined(digest) == EICAR  # kept, apart
    assert not ingestor.blobs.attachment_path(digest).exists()
    assert count(ingestor, StoredAttachment) == 1  # the screenshot only


def test_a_program_is_never_forwarded_even_when_clean(db_url: str, tmp_path: Path,
                                                      clamd: ClamdServer) -> None:
    ingestor = make(db_url, tmp_path, Screener(ClamdScanner(address=clamd.address)))
    program = b"MZ\x90\x00" + b"\0" * 200
    ingestor.ingest(mail(attachments=(("statement.pdf", "application/pdf", program),)), "t")
    sent = deliver(ingestor)
    assert all(program not in m.content for m in sent)
    [event] = kinds(ingestor, "attachment_refused")
    assert (event.data["reason"], event.data["quarantined"]) == ("a program", False)


def test_an_attachment_clamd_refuses_for_its_size_is_stored_and_never_forwarded(
        db_url: str, tmp_path: Path, small_clamd: ClamdServer) -> None:
    big = PNG + b"\0" * (2 * 1024 * 1024)  # past StreamMaxLength 1M
    scanner = ClamdScanner(socket_path=small_clamd.socket_path, timeout=10)
    ingestor = make(db_url, tmp_path, Screener(scanner, "hold"))  # hold: not held for this
    result = ingestor.ingest(mail(attachments=(("scan.png", "image/png", big),)), "t")
    assert result.outcome == "ticket"
    assert count(ingestor, StoredAttachment) == 1  # stored, for a person to look at
    [event] = kinds(ingestor, "attachment_refused")
    assert event.data["reason"].startswith("not scannable") and not event.data["quarantined"]
    [to_agent] = [m for m in deliver(ingestor) if "anna@casino.test" in m.rcpt_tos]
    assert attachments_of(to_agent.content) == []


def scanner_metric() -> float:
    return REGISTRY.get_sample_value("ticketd_scanner_unavailable_total") or 0.0


def test_clamd_down_and_hold_leaves_the_mail_for_later(db_url: str, tmp_path: Path) -> None:
    away = ClamdScanner(socket_path=tmp_path / "gone.sock", timeout=2)
    ingestor = make(db_url, tmp_path, Screener(away, "hold"))
    before = scanner_metric()
    with pytest.raises(TemporaryFailure, match="not scanned"):
        ingestor.ingest(mail(attachments=(("s.png", "image/png", PNG),)), "t")
    assert count(ingestor, IngestRecord) == 0 and count(ingestor, Ticket) == 0
    assert scanner_metric() == before + 1
    # In a batch, only the mail with attachments waits; one without needs no scanner.
    held, stored = ingestor.ingest_many([
        (mail(sender="a@mail.test", attachments=(("s.png", "image/png", PNG),)), "1"),
        (mail(sender="b@mail.test"), "2")])
    assert (held.outcome, stored.outcome) == ("held", "ticket")
    assert "not scanned" in held.reason and count(ingestor, IngestRecord) == 1


def test_clamd_down_and_store_forwards_nothing_unscanned(db_url: str, tmp_path: Path) -> None:
    away = ClamdScanner(socket_path=tmp_path / "gone.sock", timeout=2)
    ingestor = make(db_url, tmp_path, Screener(away, "store"))
    before = scanner_metric()
    result = ingestor.ingest(mail(attachments=(("s.png", "image/png", PNG),)), "t")
    assert result.outcome == "ticket"
    assert scanner_metric() == before + 1
    [to_agent] = [m for m in deliver(ingestor) if "anna@casino.test" in m.rcpt_tos]
    assert attachments_of(to_agent.content) == []
    assert count(ingestor, StoredAttachment) == 1  # stored, for a person to look at
    [event] = kinds(ingestor, "attachments_unscanned")
    assert "clamd" in event.data["reason"]


# --- responsible gambling -----------------------------------------------------------------

def response_clock(ingestor: Ingestor, number: int) -> SlaClock:
    with ingestor.sessions() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        return session.scalar(select(SlaClock).where(
            SlaClock.ticket_id == ticket.id, SlaClock.stopped_at.is_(None),
            SlaClock.kind.in_(("first_response", "next_response"))))


@pytest.mark.parametrize("sentence", [
    "I have a gambling problem, please close my account and self-exclude me.",
    "У меня игровая зависимость, прошу закрыть мой аккаунт и самоисключить меня.",
])
def test_a_follow_up_asking_for_exclusion_escalates_to_the_one_hour_clock(
        db_url: str, tmp_path: Path, sentence: str) -> None:
    ingestor = make(db_url, tmp_path)
    first = ingestor.ingest(mail(subject="Refund of my deposit", message_id="<r1@mail.test>",
                                 body="Please refund my deposit of 100 EUR."), "t")
    number = first.ticket_number
    assert number is not None
    before = response_clock(ingestor, number)
    assert before.due_at - before.started_at == timedelta(hours=24)
    started = utcnow()
    follow = ingestor.ingest(mail(subject="Re: Refund of my deposit", body=sentence,
                                  in_reply_to="<r1@mail.test>"), "t")
    assert (follow.outcome, follow.ticket_number) == ("follow_up", number)
    clock = response_clock(ingestor, number)
    assert clock.policy == "urgent"
    assert started + timedelta(minutes=59) <= clock.due_at <= utcnow() + timedelta(hours=1)
    with ingestor.sessions() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert (ticket.category, ticket.priority, ticket.group) == (
            "self_exclusion", "urgent", "responsible_gaming")
        assert ticket.safeguarded_at is not None and not may_automate(ticket)
    [event] = kinds(ingestor, "responsible_gambling")
    assert event.data["before"]["category"] == "refund"
    notes = [m for m in deliver(ingestor) if "rita@casino.test" in m.rcpt_tos]
    assert len(notes) == 1  # the responsible-gambling group hears of it


def test_a_follow_up_taken_for_a_responders_is_still_checked_for_exclusion(
        db_url: str, tmp_path: Path) -> None:
    """A reply whose subject reads like an auto-reply is answered by nobody (the loop
    limits), but a person may have written it: the request in it is not lost."""
    ingestor = make(db_url, tmp_path)
    ingestor.policy = replace(ingestor.policy, loops=LoopPolicy())
    first = ingestor.ingest(mail(subject="Refund of my deposit", message_id="<r9@mail.test>",
                                 body="Please refund my deposit of 100 EUR."), "t")
    number = first.ticket_number
    follow = ingestor.ingest(mail(subject="Re: Refund of my deposit (I am currently away)",
                                  body="I have a gambling problem, please close my account "
                                       "and self-exclude me.", in_reply_to="<r9@mail.test>"), "t")
    assert follow.reason.startswith("automated: responder")  # taken for a responder's ...
    assert number is not None and response_clock(ingestor, number).policy == "urgent"
    [event] = kinds(ingestor, "responsible_gambling")  # ... and the request still counts
    assert event.data["intent"] == "self_exclusion"


def test_a_quoted_acknowledgement_is_not_a_request(db_url: str, tmp_path: Path) -> None:
    ingestor = make(db_url, tmp_path)
    first = ingestor.ingest(mail(subject="Refund", message_id="<r2@mail.test>"), "t")
    body = ("Thanks, here is the receipt.\n\nOn 20.11.2026 Casino Support wrote:\n"
            "> self-exclusion and responsible gaming, close my account\n")
    ingestor.ingest(mail(subject="Re: Refund", body=body, in_reply_to="<r2@mail.test>"), "t")
    assert kinds(ingestor, "responsible_gambling") == []
    assert first.ticket_number and response_clock(ingestor, first.ticket_number).policy != "urgent"


def test_a_new_mail_in_german_opens_on_the_one_hour_clock(db_url: str, tmp_path: Path) -> None:
    ingestor = make(db_url, tmp_path)
    result = ingestor.ingest(mail(subject="Auszahlung", body="Bitte sperren Sie mich, ich bin "
                                  "spielsüchtig."), "t")
    assert result.ticket_number
    assert response_clock(ingestor, result.ticket_number).policy == "urgent"
    [event] = kinds(ingestor, "responsible_gambling")
    assert event.data["intent"] == "self_exclusion"


def test_an_appeal_asking_for_closure_runs_on_the_urgent_clock_not_the_appeal_one(
        db_url: str, tmp_path: Path) -> None:
    ingestor = make(db_url, tmp_path)
    first = ingestor.ingest(mail(subject="Bet dispute", message_id="<a1@mail.test>",
                                 body="My bet was settled wrongly."), "t")
    ingestor.ingest(mail(subject="Re: Bet dispute", in_reply_to="<a1@mail.test>",
                         body="I want to appeal. And please close my account, I am done."), "t")
    assert first.ticket_number
    assert len(kinds(ingestor, "appeal_requested")) == 1
    clock = response_clock(ingestor, first.ticket_number)
    assert clock.policy == "urgent" and clock.due_at - clock.started_at == timedelta(hours=1)
    [event] = kinds(ingestor, "responsible_gambling")
    assert event.data["intent"] == "account_closure"
