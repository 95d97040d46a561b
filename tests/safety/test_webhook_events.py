"""The platform hears of a player asking to be excluded, in Russian or English, in a follow-up
as in a new mail: queued in the ingest's own transaction (nothing without its commit) and
delivered once to a real HTTP server on loopback that was down for the first attempts."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from daemon.ingest import Ingestor, IngestPolicy
from daemon.outbox import OutboxSender
from daemon.responsible import safeguard
from daemon.sla import SlaOptions
from daemon.webhooks import WebhookTransport
from responders.webhooks import SELF_EXCLUSION, TICKET_CREATED, WebhookEvents, verify
from storage import db, queries
from storage.blobs import BlobStore
from storage.models import OutboxMessage, Ticket, utcnow
from tests.outbox.smtp_sink import free_port
from tests.outbox.webhook_server import Platform, WebhookServer
from tests.support.mails import mail

SUPPORT = "support@casino.test"
KEY = b"webhook-test-key-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):  # noqa: ANN204
        return self.now


def make(db_url: str, tmp_path: Path, url: str) -> Ingestor:
    policy = IngestPolicy(support_addresses=frozenset({SUPPORT}), sla=SlaOptions(),
                          webhooks=WebhookEvents(url))
    return Ingestor(db.session_factory(db.make_engine(db_url)), BlobStore(tmp_path / "state"),
                    policy)


def events(ingestor: Ingestor) -> list[tuple[str, dict]]:
    with ingestor.sessions() as session:
        rows = session.execute(select(OutboxMessage.event, OutboxMessage.raw).where(
            OutboxMessage.kind == "webhook").order_by(OutboxMessage.id)).all()
    return [(event, json.loads(raw)) for event, raw in rows]


@pytest.mark.parametrize("sentence", [
    "I have a gambling problem, please close my account and self-exclude me.",
    "У меня игровая зависимость, прошу закрыть мой аккаунт и самоисключить меня.",
])
def test_a_follow_up_asking_for_exclusion_reaches_the_platform_once(
        db_url: str, tmp_path: Path, sentence: str) -> None:
    port = free_port()  # the platform is down for now
    url = f"http://127.0.0.1:{port}/hooks"
    ingestor = make(db_url, tmp_path, url)
    first = ingestor.ingest(mail(subject="Refund of my deposit", message_id="<w1@mail.test>",
                                 body="Please refund my deposit of 100 EUR."), "t")
    assert [event for event, _ in events(ingestor)] == [TICKET_CREATED]
    ingestor.ingest(mail(subject="Re: Refund of my deposit", body=sentence,
                         in_reply_to="<w1@mail.test>"), "t")
    ingestor.ingest(mail(subject="Re: Refund of my deposit", body=sentence,
                         in_reply_to="<w1@mail.test>"), "t")  # said twice: told once
    queued = events(ingestor)
    assert [event for event, _ in queued] == [TICKET_CREATED, SELF_EXCLUSION]
    told = queued[1][1]
    assert told["ticket"] == {"number": first.ticket_number, "category": "self_exclusion",
                              "priority": "urgent", "brand": "default"}
    assert told["contact"]["address"] == "player@mail.test"
    assert told["data"]["intent"] in ("self_exclusion", "account_closure", "gambling_harm")
    assert sentence not in json.dumps(told, ensure_ascii=False)  # never what the player wrote

    clock = Clock()
    sender = OutboxSender(ingestor.sessions, None, ops_address=None, now=clock,
                          webhooks=WebhookTransport(url, (KEY,), timeout=5))
    assert asyncio.run(sender.run_once()).retried == 2  # connection refused
    server = WebhookServer(Platform(), port).start()
    try:
        for _ in range(10):  # pass after pass on the stored schedule until nothing is left
            clock.now += timedelta(minutes=10)
            asyncio.run(sender.run_once())
        requests = server.platform.requests
    finally:
        server.stop()
    # Each once (the order of retries is the schedule's jitter's)
    assert sorted(r.json()["id"] for r in requests) == sorted(q["id"] for _, q in queued)
    assert sorted(r.event for r in requests) == sorted([TICKET_CREATED, SELF_EXCLUSION])
    for request in requests:  # checked as the platform would, at the time it was signed
        signed_at = int(request.signature.partition(",")[0].removeprefix("t="))
        assert verify(KEY, request.body, request.signature, signed_at)


def test_the_event_exists_only_with_the_commit_of_its_cause(db_url: str) -> None:
    sessions = db.session_factory(db.make_engine(db_url))
    with sessions.begin() as session:
        who = queries.contact_id(session, "player@mail.test", "Player")
        ticket_id = queries.insert_ticket(session, subject="Refund", requester_id=who)[0]
    platform = WebhookEvents("https://platform.test/hooks")

    def ask(commit: bool) -> None:
        with sessions() as session:
            hit = safeguard(session, ticket_id, "Re: Refund", "Please self-exclude me.",
                            "player@mail.test", "responsible_gaming", None, webhooks=platform,
                            cause="mail 1")
            assert hit is not None
            session.commit() if commit else session.rollback()

    def queued() -> int:
        with sessions() as session:
            return session.scalar(select(func.count()).select_from(OutboxMessage)) or 0

    ask(commit=False)  # the ingest failed after the check: no escalation, and no event
    assert queued() == 0
    with sessions() as session:
        assert session.get(Ticket, ticket_id).category != "self_exclusion"
    ask(commit=True)
    assert queued() == 1


def test_a_new_mail_tells_ticket_created_then_the_exclusion(db_url: str, tmp_path: Path) -> None:
    ingestor = make(db_url, tmp_path, "https://platform.test/hooks")
    ingestor.ingest(mail(subject="Close my account", body="Please self-exclude me for a year."),
                    "t")
    assert [event for event, _ in events(ingestor)] == [TICKET_CREATED, SELF_EXCLUSION]
    created = events(ingestor)[0][1]
    assert "address" not in created["contact"] and created["data"]["language"] == "en"


def test_a_ticket_the_classifier_opens_as_self_exclusion_is_announced_once(
        db_url: str, tmp_path: Path) -> None:
    """"заблокируйте мой" is a self-exclusion keyword of the classifier and no phrase of the
    responsible-gambling list: the ticket opened that way is escalated and announced as one
    found by the list is, and a later plea on it announces nothing more."""
    ingestor = make(db_url, tmp_path, "https://platform.test/hooks")
    body = "Пожалуйста, заблокируйте мой профиль навсегда."
    first = ingestor.ingest(mail(subject="Профиль", message_id="<c1@mail.test>", body=body), "t")
    queued = events(ingestor)
    assert [event for event, _ in queued] == [TICKET_CREATED, SELF_EXCLUSION]
    assert queued[1][1]["ticket"] == {"number": first.ticket_number, "brand": "default",
                                      "category": "self_exclusion", "priority": "urgent"}
    with ingestor.sessions() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == first.ticket_number))
        assert ticket.group == "responsible_gaming" and ticket.safeguarded_at is not None
    ingestor.ingest(mail(subject="Re: Профиль", in_reply_to="<c1@mail.test>",
                         body="I want to self-exclude, please."), "t")
    assert [event for event, _ in events(ingestor)] == [TICKET_CREATED, SELF_EXCLUSION]


def test_a_new_mail_both_lists_find_is_announced_once(db_url: str, tmp_path: Path) -> None:
    ingestor = make(db_url, tmp_path, "https://platform.test/hooks")
    ingestor.ingest(mail(subject="Self-exclusion", message_id="<c2@mail.test>",
                         body="Self-exclude me please, I have a gambling problem."), "t")
    ingestor.ingest(mail(subject="Self-exclusion", message_id="<c2@mail.test>",
                         body="Self-exclude me please, I have a gambling problem."), "t")
    assert [event for event, _ in events(ingestor)] == [TICKET_CREATED, SELF_EXCLUSION]
