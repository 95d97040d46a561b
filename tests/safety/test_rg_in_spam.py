"""Spam that asks for self-exclusion does not vanish into Junk, on SQLite and PostgreSQL: from
a sender our MTA authenticated, or from a player who wrote before, it becomes a ticket on the
responsible-gambling clock; from anyone else it stays spam, flagged in `ticketd spam list`,
and operations hear of it in one mail an hour that quotes nothing of it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from daemon.ingest import Ingestor
from daemon.rg_spam import EVENT
from parsers.rg import INTENTS
from responders.loops import LoopPolicy
from storage.models import IngestRecord, OutboxMessage, Ticket
from storage.spam import list_spam
from tests.safety.test_safety_ingest import SUPPORT, count, deliver, hops, kinds, make
from tests.support.agents import AUTHSERV
from tests.support.mails import mail

OPS = "ops@casino.test"
PLEA = "I have a gambling problem, please self-exclude me and close my account."
SPAM = ("X-Spam-Flag", "YES")


def desk(db_url: str, tmp_path: Path) -> Ingestor:
    ingestor = make(db_url, tmp_path)
    ingestor.policy = replace(ingestor.policy, authserv_id=AUTHSERV,
                              loops=LoopPolicy(summary_to=(OPS,), summary_from=SUPPORT))
    return ingestor


def test_authenticated_spam_asking_for_exclusion_becomes_an_urgent_ticket(
        db_url: str, tmp_path: Path) -> None:
    ingestor = desk(db_url, tmp_path)
    aligned = (("Authentication-Results",
                f"{AUTHSERV}; dkim=pass header.d=mail.test; spf=pass smtp.mailfrom=mail.test"),)
    raw = hops(mail(subject="Please help", body=PLEA), SPAM, *aligned)
    result = ingestor.ingest(raw, "inbox;uid=1")
    assert result.outcome == "ticket" and result.ticket_number
    with ingestor.sessions() as session:
        ticket = session.query(Ticket).one()
        assert (ticket.category, ticket.priority) == ("self_exclusion", "urgent")
        assert ticket.safeguarded_at is not None
        assert list_spam(session) == []
    [set_aside] = kinds(ingestor, "spam_set_aside")
    assert set_aside.ticket_id == ticket.id
    assert "an authenticated sender" in set_aside.data["reason"]
    assert "x-spam-flag: YES" in set_aside.data["reason"]  # the verdict is not forgotten


def test_spam_from_a_player_who_wrote_before_becomes_a_ticket(db_url: str, tmp_path: Path) -> None:
    ingestor = desk(db_url, tmp_path)
    assert ingestor.ingest(hops(mail(subject="Refund", body="Please refund my deposit.")),
                           "t").outcome == "ticket"
    result = ingestor.ingest(hops(mail(subject="Help", body=PLEA), SPAM), "t")
    assert result.outcome == "ticket"
    [set_aside] = kinds(ingestor, "spam_set_aside")
    assert "a known contact" in set_aside.data["reason"]
    assert count(ingestor, Ticket, Ticket.category == "self_exclusion") == 1


def test_spam_from_a_stranger_stays_spam_flagged_and_told_to_operations_once_an_hour(
        db_url: str, tmp_path: Path) -> None:
    ingestor = desk(db_url, tmp_path)
    for n in (1, 2):
        raw = hops(mail(sender=f"stranger{n}@spam.test", subject="Win big",
                        body=f"{PLEA} Visit http://evil.test/{n}"), SPAM)
        assert ingestor.ingest(raw, f"inbox;uid={n}").outcome == "spam"
    plain = hops(mail(sender="other@spam.test", subject="Pills", body="Cheap pills"), SPAM)
    assert ingestor.ingest(plain, "inbox;uid=3").outcome == "spam"
    assert count(ingestor, Ticket) == 0
    with ingestor.sessions() as session:
        flagged = {r.id: r.rg_intent for r in list_spam(session)}
    assert len(flagged) == 3
    assert sorted(bool(v) for v in flagged.values()) == [False, True, True]
    assert {v for v in flagged.values() if v} <= set(INTENTS)
    assert len(kinds(ingestor, EVENT)) == 2
    # One row to operations for the hour, however many such spams.
    assert count(ingestor, OutboxMessage, OutboxMessage.kind == "ops") == 1
    [notice] = deliver(ingestor)
    assert notice.rcpt_tos == (OPS,)
    text = notice.content.decode()
    for spam_id, intent in flagged.items():
        assert (f"spam id {spam_id}  {intent}" in text) == bool(intent)
    for attacker in ("evil.test", "stranger1", "Win big", "gambling problem"):
        assert attacker not in text  # names ids, never the spammer's words or address
    assert "auto-generated" in text


def test_a_flagged_spam_is_released_like_any_other(db_url: str, tmp_path: Path) -> None:
    ingestor = desk(db_url, tmp_path)
    raw = hops(mail(sender="s@spam.test", subject="Help", body=PLEA), SPAM)
    assert ingestor.ingest(raw, "t").outcome == "spam"
    released = ingestor.ingest_many([(raw, "release")], released=True)[0]
    assert released.outcome == "ticket"
    assert count(ingestor, Ticket, Ticket.category == "self_exclusion") == 1
    assert count(ingestor, IngestRecord, IngestRecord.rg_intent.is_not(None)) == 0
