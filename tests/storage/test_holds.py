"""Legal holds on SQLite and PostgreSQL: what a hold covers, and that a release ends it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from storage import db, holds, queries
from storage.models import Ticket


def _desk(db_url: str):  # noqa: ANN202 - a sessionmaker and the ids it made
    sessions = db.session_factory(db.make_engine(db_url))
    with sessions.begin() as session:
        anna = queries.contact_id(session, "anna@mail.test", "Anna")
        boris = queries.contact_id(session, "boris@mail.test", "Boris")
        own, _ = queries.insert_ticket(session, subject="refund", requester_id=anna)
        cc, _ = queries.insert_ticket(session, subject="bet", requester_id=boris)
        queries.add_participants(session, cc, [("anna@mail.test", "cc")])
        other, _ = queries.insert_ticket(session, subject="bonus", requester_id=boris)
    return sessions, anna, boris, (own, cc, other)


def _held(session) -> set[int]:  # noqa: ANN001
    return set(session.scalars(select(Ticket.id).where(Ticket.id.in_(holds.held_ticket_ids()))))


def test_a_contact_hold_covers_their_own_tickets_and_those_they_took_part_in(db_url: str) -> None:
    sessions, anna, _, (own, cc, other) = _desk(db_url)
    with sessions.begin() as session:
        holds.place(session, contact_id=anna, reason="AML review", by="lead@casino.test")
    with sessions() as session:
        assert _held(session) == {own, cc}
        assert not holds.is_ticket_held(session, other)


def test_a_ticket_hold_covers_that_ticket_and_is_seen_from_every_participant(db_url: str) -> None:
    sessions, anna, boris, (own, cc, other) = _desk(db_url)
    with sessions.begin() as session:
        holds.place(session, ticket_id=cc, reason="regulator asked", by="lead@casino.test")
    with sessions() as session:
        assert _held(session) == {cc}
        assert [h.ticket_id for h in holds.holds_covering_contact(session, anna)] == [cc]
        assert [h.ticket_id for h in holds.holds_covering_contact(session, boris)] == [cc]


def test_released_holds_cover_nothing_and_stay_as_history(db_url: str) -> None:
    sessions, anna, _, _ = _desk(db_url)
    with sessions.begin() as session:
        holds.place(session, contact_id=anna, reason="dispute", by="lead@casino.test")
    with sessions.begin() as session:
        assert holds.release(session, contact_id=anna, by="dpo@casino.test") == 1
        assert holds.release(session, contact_id=anna, by="dpo@casino.test") == 0
    with sessions() as session:
        assert _held(session) == set()
        assert holds.holds_covering_contact(session, anna) == []


def test_a_hold_names_exactly_one_target(db_url: str) -> None:
    sessions, anna, _, (own, _, _) = _desk(db_url)
    with sessions.begin() as session, pytest.raises(ValueError):
        holds.place(session, ticket_id=own, contact_id=anna, reason="x", by="y")
