"""The event log's hash chain on SQLite and PostgreSQL: sealing, and `verify` naming the first
row that was edited, deleted or slipped in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session, sessionmaker

from storage import audit, db, queries
from storage.models import Event, utcnow


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(db_url)
    yield db.session_factory(engine)
    engine.dispose()


def _events(sessions: sessionmaker[Session], count: int, kind: str = "note") -> list[int]:
    with sessions.begin() as session:
        for n in range(count):
            queries.insert_event(session, kind, actor=f"agent{n}", n=n, text="Привет", amount=1.5)
        return list(session.scalars(select(Event.id).order_by(Event.id.desc()).limit(count)))[::-1]


def _verify(sessions: sessionmaker[Session]) -> audit.Verdict:
    with sessions() as session:
        return audit.verify(session)


def test_sealing_chains_every_row_once_in_order_and_verify_passes(sessions) -> None:
    ids = _events(sessions, 5)
    assert _verify(sessions).unsealed == 5
    assert audit.seal(sessions, limit=2) == 5  # three batches
    assert audit.seal(sessions) == 0
    more = _events(sessions, 3)
    assert audit.seal(sessions) == 3
    with sessions() as session:
        rows = session.execute(select(Event.id, Event.chain_seq, Event.prev_hash, Event.hash)
                               .order_by(Event.chain_seq)).all()
    assert [r.id for r in rows] == ids + more
    assert [r.chain_seq for r in rows] == list(range(1, 9))
    assert rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:], strict=False))
    verdict = _verify(sessions)
    assert (verdict.broken, verdict.checked, verdict.unsealed) == (None, 8, 0)
    assert verdict.head_hash == rows[-1].hash


def test_an_edited_row_is_named(sessions) -> None:
    ids = _events(sessions, 6)
    audit.seal(sessions)
    with sessions.begin() as session:
        session.execute(update(Event).where(Event.id == ids[3]).values(data={"n": 99}))
    broken = _verify(sessions).broken
    assert broken is not None and broken.event_id == ids[3]
    assert broken.reason.startswith("edited")


@pytest.mark.parametrize("column,value", [("actor", "someone else"), ("kind", "created"),
                                          ("ticket_id", None), ("created_at", "shift")])
def test_every_field_is_covered(sessions, column: str, value) -> None:  # noqa: ANN001
    ids = _events(sessions, 3)
    audit.seal(sessions)
    with sessions.begin() as session:
        row = session.get(Event, ids[1])
        assert row is not None
        if value == "shift":
            value = row.created_at + timedelta(seconds=1)
        if column == "ticket_id":  # a real ticket, so the foreign key holds
            who = queries.contact_id(session, "p@mail.test")
            value, _ = queries.insert_ticket(session, subject="x", requester_id=who)
        session.execute(update(Event).where(Event.id == ids[1]).values({column: value}))
    broken = _verify(sessions).broken
    assert broken is not None and broken.event_id == ids[1]


def test_a_deleted_row_is_named_by_its_place_and_the_row_after_it(sessions) -> None:
    ids = _events(sessions, 6)
    audit.seal(sessions)
    with sessions.begin() as session:
        session.execute(text("DELETE FROM events WHERE id = :i"), {"i": ids[2]})
    verdict = _verify(sessions)
    assert verdict.broken is not None
    assert (verdict.broken.event_id, verdict.broken.chain_seq) == (ids[3], 4)
    assert "deleted: place 3" in verdict.broken.reason
    assert verdict.checked == 2


def test_the_first_row_deleted_and_the_chain_renumbered_is_caught(sessions) -> None:
    ids = _events(sessions, 4)
    audit.seal(sessions)
    with sessions.begin() as session:
        session.execute(text("DELETE FROM events WHERE id = :i"), {"i": ids[0]})
        for seq, event_id in enumerate(ids[1:], start=1):  # a careful forger closes the gap
            session.execute(text("UPDATE events SET chain_seq = :s WHERE id = :i"),
                            {"s": seq, "i": event_id})
    broken = _verify(sessions).broken
    assert broken is not None and broken.event_id == ids[1]
    assert "prev_hash does not match" in broken.reason


def test_a_row_forged_with_a_made_up_hash_is_named(sessions) -> None:
    _events(sessions, 3)
    audit.seal(sessions)
    with sessions.begin() as session:
        session.execute(text(
            "INSERT INTO events (kind, actor, data, created_at, chain_seq, prev_hash, hash) "
            "VALUES ('refund_approved', 'boss', '{}', :t, 4, :p, :h)"),
            {"t": utcnow().replace(tzinfo=None), "p": "f" * 64, "h": "e" * 64})
        forged = session.scalar(select(Event.id).where(Event.kind == "refund_approved"))
    broken = _verify(sessions).broken
    assert broken is not None and broken.event_id == forged


def test_a_backdated_row_slipped_in_unsealed_is_named_once_sealed(sessions) -> None:
    _events(sessions, 3)
    audit.seal(sessions)
    with sessions.begin() as session:
        queries.insert_event(session, "refund_approved", actor="boss")
        forged = session.scalar(select(Event.id).where(Event.kind == "refund_approved"))
        session.execute(update(Event).where(Event.id == forged)
                        .values(created_at=utcnow() - timedelta(days=30)))
    audit.seal(sessions)
    broken = _verify(sessions).broken
    assert broken is not None and broken.event_id == forged
    assert broken.reason.startswith("inserted")


def test_a_lower_id_committing_after_a_higher_one_was_sealed_joins_the_chain(pg_url) -> None:
    """PostgreSQL hands out ids at insert and shows rows at commit: the chain follows sealing
    order, so the late row takes the next place and the chain stays whole."""
    engine = db.make_engine(pg_url)
    sessions = db.session_factory(engine)
    slow = sessions()
    slow.begin()
    queries.insert_event(slow, "slow")  # takes the lower id, commits last
    _events(sessions, 2, kind="fast")
    assert audit.seal(sessions) == 2
    slow.commit()
    slow.close()
    assert audit.seal(sessions) == 1
    with sessions() as session:
        order = list(session.scalars(select(Event.kind).order_by(Event.chain_seq)))
        ids = list(session.scalars(select(Event.id).order_by(Event.chain_seq)))
    assert order == ["fast", "fast", "slow"] and ids[2] < ids[0]
    assert _verify(sessions).broken is None
    engine.dispose()


def test_redacted_rows_still_verify_and_a_redaction_cannot_carry_content(sessions) -> None:
    ids = _events(sessions, 4)
    audit.seal(sessions)
    late = _events(sessions, 1)  # not yet sealed: simply rewritten
    with sessions.begin() as session:
        assert audit.redact(session, [ids[1], late[0]]) == 2
        assert audit.redact(session, [ids[1]]) == 0  # once
    audit.seal(sessions)
    verdict = _verify(sessions)
    assert (verdict.broken, verdict.checked, verdict.redacted) == (None, 5, 1)
    with sessions() as session:
        rows = session.execute(select(Event.actor, Event.data)
                               .where(Event.id.in_([ids[1], late[0]]))).all()
    assert {(a, str(d)) for a, d in rows} == {("redacted", "{'redacted': True}")}
    with sessions.begin() as session:  # a forger puts other content under the redaction
        session.execute(update(Event).where(Event.id == ids[1]).values(actor="boss"))
    broken = _verify(sessions).broken
    assert broken is not None and broken.event_id == ids[1]
    assert "redacted, yet holds content" in broken.reason


def test_a_row_edited_before_its_redaction_is_not_laundered_by_it(sessions) -> None:
    ids = _events(sessions, 2)
    audit.seal(sessions)
    with sessions.begin() as session:
        session.execute(update(Event).where(Event.id == ids[0]).values(actor="boss"))
    with sessions.begin() as session:
        assert audit.redact(session, [ids[0]]) == 1
    broken = _verify(sessions).broken
    assert broken is not None and broken.event_id == ids[0]
    assert broken.reason.startswith("edited")
