"""Brands in storage, on SQLite and PostgreSQL: a ticket keeps the brand of the mailbox its
mail came in at, one person is one contact under every brand, and a responsible-gambling
request under one brand is seen under the other. The migration gives old rows the default."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from daemon.app import App
from daemon.responsible import may_automate
from responders.identity import DEFAULT_BRAND
from storage import db, erasure
from storage.models import Contact, Event, OutboxMessage, Ticket
from tests.support.db import PG_ADMIN_URL, _pg_url
from tests.support.desks import DESK, desk_from
from tests.support.mails import mail

SECRET = "brand-storage-key-0123456789"

CONFIG = DESK + """
[team]
agents = [{{ address = "anna@desk.test", name = "Anna", groups = ["support"] }}]

[[brands]]
name = "lucky"
address = "help@lucky.test"
display_name = "Lucky Casino Help"
default_language = "de"
routing = {{ self_exclusion = "lucky_rg" }}

[[brands]]
name = "stars"
address = "support@stars.test"
display_name = "Stars Poker Support"
default_group = "stars_team"
"""


@pytest.fixture
def app(db_url: str, tmp_path: Path) -> App:
    return desk_from(CONFIG.format(url=db_url), tmp_path, SECRET)


def _ticket(app: App, subject: str) -> Ticket:
    with app.sessions() as session:
        found = session.scalar(select(Ticket).where(Ticket.subject == subject))
        assert found is not None
        session.expunge(found)
        return found


def _acks(app: App) -> dict[int, OutboxMessage]:
    with app.sessions() as session:
        return {row.ticket_id: row for row in session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "ack"))}


def test_a_ticket_keeps_its_mailboxs_brand_and_is_answered_as_it(app: App) -> None:
    app.ingestor_for("lucky").ingest(mail(sender="jonas@player.test", to="help@lucky.test",
                                          subject="Auszahlung", body="Wo bleibt mein Geld?"))
    app.ingestor_for("stars").ingest(mail(sender="ivan@player.test", to="support@stars.test",
                                          subject="Tournament",
                                          body="Is the Friday tournament still on?"))
    app.ingestor.ingest(mail(sender="old@player.test", subject="Old desk", body="Hello?"))
    lucky, stars, old = (_ticket(app, s) for s in ("Auszahlung", "Tournament", "Old desk"))
    assert (lucky.brand, stars.brand, old.brand) == ("lucky", "stars", DEFAULT_BRAND)
    acks = _acks(app)
    assert acks[lucky.id].envelope_from == "help@lucky.test"
    assert acks[stars.id].envelope_from == "support@stars.test"
    assert acks[old.id].envelope_from == "desk@ops.test"
    assert stars.group == "stars_team"  # the brand's default group
    assert lucky.group == "support"  # the team's default, where the brand says nothing


def test_a_self_exclusion_under_one_brand_is_seen_under_the_other(app: App) -> None:
    app.ingestor_for("lucky").ingest(mail(
        sender="Sam <sam@player.test>", to="help@lucky.test", subject="Exclude me",
        body="Please self-exclude me, close my account. I have a gambling problem."))
    app.ingestor_for("stars").ingest(mail(
        sender="Sam <sam@player.test>", to="support@stars.test", subject="Deposit",
        body="How long does a card deposit take?"))
    asked, later = _ticket(app, "Exclude me"), _ticket(app, "Deposit")
    assert (asked.brand, later.brand) == ("lucky", "stars")
    assert asked.requester_id == later.requester_id  # one person, one contact
    with app.sessions() as session:
        sam = session.get(Contact, later.requester_id)
        assert sam is not None
        assert sam.safeguarded_at is not None and sam.safeguard_brand == "lucky"
        assert sam.safeguard_intent in ("self_exclusion", "account_closure", "gambling_harm")
        (event,) = session.scalars(select(Event).where(Event.kind == "contact_safeguarded"))
        assert event.ticket_id == later.id and event.data["brand"] == "lucky"
        stars_ticket = session.get(Ticket, later.id)
        assert stars_ticket is not None
        assert not may_automate(stars_ticket)  # nothing automatic closes it either
    assert asked.group == "lucky_rg"  # the brand's own responsible-gambling group
    assert later.group == "responsible_gaming"  # stars' (the team's) takes the new one up


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database without any schema, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    name = f"ticketd_m_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield _pg_url(name)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_the_migration_puts_old_tickets_under_the_default_brand(empty_url: str) -> None:
    engine = db.make_engine(empty_url)
    db.upgrade(engine, "0014")
    with engine.begin() as conn:
        for cid, address in ((1, "asked@player.test"), (2, "quiet@player.test")):
            conn.execute(text("INSERT INTO contacts (id, address, name, bouncing, created_at) "
                              "VALUES (:id, :a, '', false, '2026-11-01 10:00:00')"),
                         {"id": cid, "a": address})
        for tid, cid, safe in ((1, 1, "2026-11-02 10:00:00"), (2, 1, None), (3, 2, None)):
            conn.execute(text(
                "INSERT INTO tickets (id, number, subject, status, category, priority, "
                "language, requester_id, safeguarded_at, created_at, updated_at) VALUES "
                "(:id, :n, 's', 'open', 'other', 'normal', 'en', :c, :s, "
                "'2026-11-01 10:00:00', '2026-11-01 10:00:00')"),
                {"id": tid, "n": 10000 + tid, "c": cid, "s": safe})
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
    sessions = db.session_factory(engine)
    with sessions() as session:
        assert set(session.scalars(select(Ticket.brand))) == {DEFAULT_BRAND}
        asked, quiet = session.get(Contact, 1), session.get(Contact, 2)
        assert asked is not None and quiet is not None
        assert asked.safeguarded_at is not None and asked.safeguard_brand == DEFAULT_BRAND
        assert quiet.safeguarded_at is None
        # The search index still follows the tickets (no batch rebuild dropped a trigger).
        session.execute(text("UPDATE tickets SET subject = 'withdrawal' WHERE id = 3"))
        session.commit()
    engine.dispose()


def test_ticketd_ingest_takes_a_brand_for_an_mta_pipe(app: App, db_url: str,
                                                      tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    config = tmp_path / "ticketd.toml"
    raw = tmp_path / "mail.eml"
    raw.write_bytes(mail(sender="pipe@player.test", to="help@lucky.test", subject="Piped"))
    env = {**os.environ, "TICKETD_SECURITY__SECRET": "brand-storage-key-0123456789"}

    def ingest(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daemon", "--config", str(config),
                               "ingest", *args], capture_output=True, text=True, env=env,
                              timeout=60)

    refused = ingest("--brand", "lukcy", str(raw))
    assert refused.returncode == 78 and "no brand 'lukcy'" in refused.stderr
    done = ingest("--brand", "lucky", str(raw))
    assert done.returncode == 0, done.stderr
    assert _ticket(app, "Piped").brand == "lucky"


ROUTING = 'routing = {{ self_exclusion = "lucky_rg" }}\n'
LUCKY_CGA = CONFIG.replace(ROUTING, ROUTING + '''

[brands.complaints]
profile = "cga"
adr_entity = "Lucky ADR Service"
adr_url = "https://adr.lucky.test"
''')


def test_a_reply_at_another_brands_mailbox_meets_the_tickets_brands_rules(
        db_url: str, tmp_path: Path) -> None:
    desk = desk_from(LUCKY_CGA.format(url=db_url), tmp_path, SECRET)
    desk.ingestor_for("lucky").ingest(mail(
        sender="Sam <sam@player.test>", to="help@lucky.test", subject="Bonus terms",
        body="Why was my bonus cancelled?"))
    ticket = _ticket(desk, "Bonus terms")
    ack = _acks(desk)[ticket.id]
    # Sam answers our acknowledgement, but to the other brand's address.
    desk.ingestor_for("stars").ingest(mail(
        sender="Sam <sam@player.test>", to="support@stars.test", subject="Re: Bonus terms",
        body="Actually, please self-exclude me. I have a gambling problem.",
        in_reply_to=ack.message_id))
    after = _ticket(desk, "Bonus terms")
    assert after.brand == "lucky"
    assert after.group == "lucky_rg"  # lucky's responsible-gambling group, not stars'
    with desk.sessions() as session:
        kinds = list(session.scalars(select(Event.kind).where(Event.ticket_id == ticket.id)))
    assert "follow_up" in kinds
    assert "complaint_fast_lane" in kinds  # lucky's profile (cga: one business day)


def test_an_erased_persons_ticket_keeps_its_brand(app: App) -> None:
    app.ingestor_for("lucky").ingest(mail(sender="jonas@player.test", to="help@lucky.test",
                                          subject="Auszahlung", body="Wo bleibt mein Geld?"))
    ticket = _ticket(app, "Auszahlung")
    with app.sessions() as session:
        erasure.erase(session, app.blobs, "jonas@player.test", by="dpo")
        session.commit()
    with app.sessions() as session:
        after = session.get(Ticket, ticket.id)
        assert after is not None and after.subject == ""
        assert after.brand == "lucky"  # reports per brand still count it


def test_erasure_clears_the_persons_responsible_gambling_flag(app: App) -> None:
    app.ingestor_for("lucky").ingest(mail(
        sender="Sam <sam@player.test>", to="help@lucky.test", subject="Exclude me",
        body="Please self-exclude me, close my account. I have a gambling problem."))
    asked = _ticket(app, "Exclude me")
    with app.sessions() as session:
        erasure.erase(session, app.blobs, "sam@player.test", by="dpo")
        session.commit()
    with app.sessions() as session:
        sam = session.get(Contact, asked.requester_id)
        assert sam is not None and sam.address.endswith("@invalid")
        # what they asked for, and under which brand, is their data too: gone with the rest
        assert (sam.safeguarded_at, sam.safeguard_intent, sam.safeguard_brand) == (
            None, None, None)
