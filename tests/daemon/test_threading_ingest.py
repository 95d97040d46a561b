"""Threading through the whole ingest pipeline, on SQLite and PostgreSQL (invariant 4)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from daemon.ingest import IngestPolicy, Ingestor
from responders.references import message_id_for
from storage import db, queries
from storage.blobs import BlobStore
from storage.models import Event, Ticket, utcnow
from tests.support.mails import mail

KEYS = (b"current-key-0123456789abcdef", b"older-key-0123456789abcdef")
POLICY = IngestPolicy(support_addresses=frozenset({"support@casino.test"}), keys=KEYS)
PLAYER = "Игрок <player@mail.test>"


@pytest.fixture
def ingestor(db_url: str, tmp_path: Path) -> Ingestor:
    return Ingestor(db.session_factory(db.make_engine(db_url)), BlobStore(tmp_path), POLICY)


def first_ticket(ingestor: Ingestor, **kw) -> int:  # noqa: ANN003
    result = ingestor.ingest(mail(message_id="<first@mail.test>", **kw), "t")
    assert result.outcome == "ticket"
    return result.ticket_number


def conversation(ingestor: Ingestor, number: int) -> dict:
    with ingestor.sessions() as session:
        return queries.ticket_as_dict(queries.ticket_by_ref(session, number))


def events(ingestor: Ingestor, kind: str) -> list[Event]:
    with ingestor.sessions() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind)))


def test_a_reply_by_in_reply_to_joins(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor)
    r = ingestor.ingest(mail(subject="Re: Refund request", in_reply_to="<first@mail.test>"), "t")
    assert (r.outcome, r.ticket_number) == ("follow_up", number)


def test_a_reply_by_references_only_joins(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor)
    r = ingestor.ingest(mail(subject="totally new subject", references="<x@y> <first@mail.test>"), "t")
    assert (r.outcome, r.ticket_number) == ("follow_up", number)


def test_a_signed_message_id_joins_even_when_not_stored(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor)
    ours = message_id_for(number, KEYS, "casino.test")
    r = ingestor.ingest(mail(subject="Ответ: обращение", in_reply_to=f"<{ours}>"), "t")
    assert (r.outcome, r.ticket_number) == ("follow_up", number)


def test_a_message_id_signed_with_a_rotated_key_still_joins(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor)
    old = message_id_for(number, KEYS[1:], "casino.test")
    r = ingestor.ingest(mail(in_reply_to=f"<{old}>"), "t")
    assert (r.outcome, r.ticket_number) == ("follow_up", number)


def test_an_outlook_reply_without_in_reply_to_joins_by_tag_from_the_requester(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor)
    body = ("Still waiting.\n\n________________________________\nFrom: Casino Support "
            "<support@casino.test>\nSent: Friday, November 20, 2026 1:00 PM\nTo: player@mail.test\n"
            f"Subject: [#{number}] Refund request\n\nWe received your request.")
    r = ingestor.ingest(mail(subject=f"RE: [#{number}] Refund request", body=body), "t")
    assert (r.outcome, r.ticket_number) == ("follow_up", number)
    assert conversation(ingestor, number)["messages"][1]["text"] == "Still waiting."


def test_a_tag_from_a_cc_participant_joins(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor, headers={"Cc": "Brother <brother@mail.test>"})
    r = ingestor.ingest(mail(sender="brother@mail.test", subject=f"AW: [#{number}] x"), "t")
    assert (r.outcome, r.ticket_number) == ("follow_up", number)


def test_a_tag_from_a_stranger_opens_a_new_linked_ticket_and_leaks_nothing(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor)
    r = ingestor.ingest(mail(sender="intruder@evil.test", subject=f"Re: [#{number}] give me data",
                             body="Show me the conversation"), "t")
    assert r.outcome == "ticket" and r.ticket_number != number
    assert [m["from"] for m in conversation(ingestor, number)["messages"]] == ["player@mail.test"]
    new = conversation(ingestor, r.ticket_number)
    assert new["linked_ticket"] == number - 10000
    [linked] = events(ingestor, "linked")
    assert linked.data["linked_ticket"] == number and "outside the ticket" in linked.data["reason"]


def test_a_forged_signature_is_not_joined(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor)
    forged = f"<t{number}.abcdefgh.AAAAAAAAAAAAAAAA@casino.test>"
    r = ingestor.ingest(mail(sender="intruder@evil.test", in_reply_to=forged), "t")
    assert r.outcome == "ticket" and r.ticket_number != number
    assert len(conversation(ingestor, number)["messages"]) == 1
    [linked] = events(ingestor, "linked")
    assert "bad signature" in linked.data["reason"]


def _resolve(ingestor: Ingestor, number: int, days_ago: float, status: str = "resolved") -> None:
    with ingestor.sessions.begin() as session:
        session.execute(update(Ticket).where(Ticket.number == number).values(
            status=status, resolved_at=utcnow() - timedelta(days=days_ago)))


def test_a_reply_within_the_reopen_window_reopens_the_resolved_ticket(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor)
    _resolve(ingestor, number, 13)
    r = ingestor.ingest(mail(in_reply_to="<first@mail.test>", body="It happened again"), "t")
    assert (r.outcome, r.ticket_number) == ("follow_up", number)
    assert conversation(ingestor, number)["status"] == "open"
    assert events(ingestor, "reopened")


def test_a_reply_after_the_reopen_window_opens_a_linked_ticket(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor)
    _resolve(ingestor, number, 15)
    r = ingestor.ingest(mail(in_reply_to="<first@mail.test>", subject="Re: Refund request"), "t")
    assert r.outcome == "ticket" and r.ticket_number != number
    assert conversation(ingestor, number)["status"] == "resolved"
    assert conversation(ingestor, r.ticket_number)["subject"] == "Refund request"


def test_a_reply_to_a_closed_ticket_opens_a_linked_ticket(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor)
    _resolve(ingestor, number, 0, status="closed")
    r = ingestor.ingest(mail(in_reply_to="<first@mail.test>"), "t")
    assert r.outcome == "ticket" and r.ticket_number != number


def test_a_pending_ticket_is_opened_again_by_the_players_reply(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor)
    with ingestor.sessions.begin() as session:
        session.execute(update(Ticket).where(Ticket.number == number).values(status="pending"))
    ingestor.ingest(mail(in_reply_to="<first@mail.test>"), "t")
    assert conversation(ingestor, number)["status"] == "open"


def test_the_same_mail_through_two_of_our_addresses_is_stored_once(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor, to="support@casino.test, billing@casino.test")
    # Each mailbox's copy: the same mail with its own trace fields, so other bytes.
    copy = (b"Delivered-To: billing@casino.test\r\n"
            + mail(message_id="<first@mail.test>", to="support@casino.test, billing@casino.test"))
    r = ingestor.ingest(copy, "t")
    assert r.duplicate and r.ticket_number == number
    assert len(conversation(ingestor, number)["messages"]) == 1


def test_an_escalation_request_in_a_reply_marks_the_ticket_for_appeal(ingestor: Ingestor) -> None:
    number = first_ticket(ingestor)
    ingestor.ingest(mail(in_reply_to="<first@mail.test>", body="Я хочу обжаловать это решение."), "t")
    with ingestor.sessions() as session:
        assert session.scalar(select(Ticket.appeal_requested_at).where(Ticket.number == number))
    [event] = events(ingestor, "appeal_requested")
    assert event.data["keyword"] == "обжаловать"


AGENT_POLICY = IngestPolicy(support_addresses=frozenset({"support@casino.test"}), keys=KEYS,
                            agents=frozenset({"anna@casino.test"}), authserv_id="mx.casino.test")
FORWARD_BODY = ("Please take this one.\n\n---------- Forwarded message ---------\n"
                "From: Пётр Игроков <petr@players.test>\nDate: Mon, 23 Nov 2026 10:00\n"
                "Subject: Не пришёл вывод средств\nTo: anna@casino.test\n\n"
                "Здравствуйте, вывод средств не пришёл уже неделю. Верните деньги.\n")


def _forward(auth: str | None) -> bytes:
    headers = {"Authentication-Results": auth} if auth else {}
    return mail(sender="Anna <anna@casino.test>", subject="Fwd: Не пришёл вывод средств",
                body=FORWARD_BODY, headers=headers)


@pytest.fixture
def agent_ingestor(db_url: str, tmp_path: Path) -> Ingestor:
    return Ingestor(db.session_factory(db.make_engine(db_url)), BlobStore(tmp_path), AGENT_POLICY)


def test_an_authenticated_agent_forward_opens_the_ticket_for_the_original_player(
        agent_ingestor: Ingestor) -> None:
    r = agent_ingestor.ingest(_forward("mx.casino.test; dkim=pass header.d=casino.test"), "t")
    doc = conversation(agent_ingestor, r.ticket_number)
    assert (r.outcome, doc["requester"], doc["subject"]) == (
        "ticket", "petr@players.test", "Не пришёл вывод средств")
    assert doc["category"] == "refund" and doc["language"] == "ru"
    assert doc["messages"][0]["text"].startswith("Здравствуйте, вывод средств не пришёл")
    [event] = events(agent_ingestor, "forwarded_by_agent")
    assert event.actor == "anna@casino.test"


def test_an_unauthenticated_forward_claiming_an_agent_is_not_taken_as_one(
        agent_ingestor: Ingestor) -> None:
    forged = _forward("mx.casino.test; dkim=pass header.d=evil.test")
    r = agent_ingestor.ingest(forged, "t")
    # Nor as a player's complaint, nor filed away unseen: it waits in the quarantine with
    # its reason (the held notice to the agent: tests/safety/test_forward_refused.py).
    assert (r.outcome, r.ticket_number) == ("quarantined", None)
    assert "forward from agent anna@casino.test not authenticated" in r.reason
    assert events(agent_ingestor, "forwarded_by_agent") == []
    assert events(agent_ingestor, "staff_mail_without_ticket") == []
    [held] = events(agent_ingestor, "agent_mail_held")  # counted against the agent's notices
    assert held.actor == "anna@casino.test" and held.data["forward"] is True


def test_a_players_forward_stays_the_players_ticket(agent_ingestor: Ingestor) -> None:
    raw = mail(sender="player@mail.test", subject="Fwd: bank notice", body=FORWARD_BODY)
    r = agent_ingestor.ingest(raw, "t")
    assert conversation(agent_ingestor, r.ticket_number)["requester"] == "player@mail.test"
