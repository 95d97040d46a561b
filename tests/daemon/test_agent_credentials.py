"""Invariant 5 against a player who forges an agent's From, on SQLite and PostgreSQL: in
every `agent_auth` mode the only credential is a signed reference of a mail sent to that
agent about that ticket (purpose and recipient inside the signature)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.ingest import Ingestor, IngestPolicy
from daemon.team import Agent, TeamPolicy
from responders.acks import AckPolicy
from responders.identity import Identity
from responders.references import message_id_for
from responders.rendering import Templates
from storage import db
from storage.blobs import BlobStore
from storage.models import OutboxMessage, Ticket
from tests.support.agents import AUTHSERV, PASS, reply_to_notification
from tests.support.mails import mail

SUPPORT = "support@casino.test"
KEYS = (b"credential-test-key-0123456789ab",)
DESK = Identity(SUPPORT, "Casino Support", KEYS, Templates())
TEAM = TeamPolicy(
    DESK,
    agents={"anna@casino.test": Agent("anna@casino.test", "Anna Smirnova", ("payments",)),
            "bob@casino.test": Agent("bob@casino.test", "Bob", ("payments",))},
    routing={"refund": "payments"}, authserv_id=AUTHSERV,
)
COMMANDS = "#priority urgent\n#assign me\n#merge {other}"


@pytest.fixture(params=["token", "token+authres"])
def ingestor(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Ingestor:
    team = replace(TEAM, agent_auth=request.param)
    policy = IngestPolicy(support_addresses=frozenset({SUPPORT}), keys=KEYS, ack=AckPolicy(DESK),
                          team=team, agents=frozenset(team.agents), authserv_id=AUTHSERV)
    return Ingestor(db.session_factory(db.make_engine(db_url)), BlobStore(tmp_path), policy)


def outbox(ingestor: Ingestor, kind: str) -> list[OutboxMessage]:
    with ingestor.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)
                                    .order_by(OutboxMessage.id)))


def ticket(ingestor: Ingestor, number: int) -> Ticket:
    with ingestor.sessions() as session:
        return session.scalar(select(Ticket).where(Ticket.number == number))


def two_tickets(ingestor: Ingestor) -> tuple[int, int]:
    first = ingestor.ingest(mail(subject="Refund of my deposit", message_id="<q1@mail.test>",
                                 body="Please refund my deposit of 100 EUR."), "t")
    second = ingestor.ingest(mail(subject="Another refund", message_id="<q2@mail.test>",
                                  body="Please refund my second deposit."), "t")
    return first.ticket_number, second.ticket_number


def untouched(ingestor: Ingestor, number: int) -> bool:
    t = ticket(ingestor, number)
    return (t.priority, t.assignee, t.status) == ("normal", None, "open")


def test_the_players_own_acknowledgement_is_no_agent_credential(ingestor: Ingestor) -> None:
    number, other = two_tickets(ingestor)
    ack = next(row for row in outbox(ingestor, "ack") if row.ticket_id == ticket(
        ingestor, number).id)
    forged = reply_to_notification(ack.raw, COMMANDS.format(other=other), auth=(PASS,))
    result = ingestor.ingest(forged, "t")
    assert result.reason.startswith("agent held"), result.reason
    assert "notification sent to you" in result.reason
    assert untouched(ingestor, number) and untouched(ingestor, other)


def test_a_notification_sent_to_bob_does_not_authorise_anna(ingestor: Ingestor) -> None:
    number, other = two_tickets(ingestor)
    mine = ticket(ingestor, number).id
    notes = {row.recipients[0]: row for row in outbox(ingestor, "notification")
             if row.ticket_id == mine}
    assert set(notes) == {"anna@casino.test", "bob@casino.test"}  # one each
    borrowed = reply_to_notification(notes["bob@casino.test"].raw, COMMANDS.format(other=other))
    assert ingestor.ingest(borrowed, "t").reason.startswith("agent held")
    assert untouched(ingestor, number)
    own = reply_to_notification(notes["anna@casino.test"].raw, "#priority urgent\n#assign me")
    assert ingestor.ingest(own, "t").reason == "agent commands"
    t = ticket(ingestor, number)
    assert (t.priority, t.assignee) == ("urgent", "anna@casino.test")



def test_a_notification_sent_before_recipients_were_signed_still_works_for_its_recipient(
    ingestor: Ingestor,
) -> None:
    """Its Message-ID only threads; our outbox record says to whom it went and why."""
    number, _ = two_tickets(ingestor)
    mine = ticket(ingestor, number).id
    with ingestor.sessions.begin() as session:
        rows = session.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "notification", OutboxMessage.ticket_id == mine)).all()
        for row in rows:  # as an older ticketd wrote them: the ticket signed, nothing more
            old = message_id_for(number, KEYS, "casino.test")
            row.raw = row.raw.replace(row.message_id.encode(), old.encode())
            row.message_id = old
    notes = {row.recipients[0]: row for row in outbox(ingestor, "notification")
             if row.ticket_id == mine}
    borrowed = reply_to_notification(notes["bob@casino.test"].raw, "#priority urgent")
    assert ingestor.ingest(borrowed, "t").reason.startswith("agent held")
    own = reply_to_notification(notes["anna@casino.test"].raw, "#priority urgent")
    assert ingestor.ingest(own, "t").reason == "agent commands"
    assert ticket(ingestor, number).priority == "urgent"
