"""`ticketd privacy erase` on SQLite and PostgreSQL: no trace of the person left in any table,
no file of theirs readable (backups included), another person untouched, refused under a
legal hold, asked for on a terminal, recognised when asked again."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from storage import audit, holds
from storage.blobs import associated
from storage.crypto import WrongKey, open_sealed
from storage.erasure import erased_before
from storage.models import Contact, ContactKey, Erasure, Event, Message, SlaClock, Ticket
from storage.vault import KeyDestroyed
from tests.privacy.conftest import KEY_A, complaint, dump_database, stored_bytes

IVAN = "Ivan Petrov <ivan@mail.test>"
OLGA = "Olga Smirnova <olga@mail.test>"
PASSPORT = b"%PDF-1.4 passport of Ivan Petrov, series 4509 number 112233 " * 20
OLGA_SCAN = b"%PDF-1.4 Olga's utility bill, account 55-66-77 " * 20
IVAN_TRACES = ["ivan@mail.test", "Ivan Petrov", "Deposit of 300 EUR vanished",
               "card ending 4417", "Self-exclusion please", "passport_ivan.pdf",
               "Withdrawal still pending", "i1.ivan@mail.test",
               "vanished", "4417", "petrov"]  # single words too: a search index keeps words


def _traces_in(text: str) -> list[str]:
    """The traces found as whole words: "4417" inside a hash or a microsecond timestamp
    (09:12:33.441725) is not the card number."""
    return [trace for trace in IVAN_TRACES if re.search(
        r"(?<![0-9a-z])" + re.escape(trace.lower()) + r"(?![0-9a-z])", text.lower())]


def populate(desk) -> tuple[list[int], int, bytes]:  # noqa: ANN001
    numbers = [
        desk.ingest(complaint(IVAN, "Deposit of 300 EUR vanished", "Paid with card ending 4417.",
                              message_id="<i1.ivan@mail.test>",
                              attachments=(("passport_ivan.pdf", "application/pdf", PASSPORT),))),
        desk.ingest(complaint(IVAN, "Self-exclusion please", "Exclude me for a year.",
                              message_id="<i2.ivan@mail.test>")),
    ]
    desk.ingest(complaint(IVAN, f"Re: [#{numbers[0]}] Withdrawal still pending",
                          "Withdrawal still pending, card ending 4417.",
                          message_id="<i3.ivan@mail.test>", in_reply_to="<i1.ivan@mail.test>"))
    olga_raw = complaint(OLGA, "Bonus not credited", "My welcome bonus is missing.",
                         message_id="<o1@mail.test>",
                         attachments=(("bill.pdf", "application/pdf", OLGA_SCAN),))
    return numbers, desk.ingest(olga_raw), olga_raw


def sealed_files(root: Path) -> dict[Path, bytes]:
    return {path: data for path, data in stored_bytes(root) if path.suffix == ".sealed"}


@pytest.mark.parametrize("keys", [[KEY_A], None], ids=["key_file", "no_key_file"])
def test_erase_leaves_no_trace_of_the_person_and_leaves_the_other_untouched(
        desk_factory, tmp_path: Path, keys: list[str] | None) -> None:  # noqa: ANN001
    desk = desk_factory(keys)
    ivans, olgas, olga_raw = populate(desk)
    assert _running_clocks(desk, ivans) > 0  # his complaints are on the clock
    before = dump_database(desk.app)
    assert _traces_in(before) == IVAN_TRACES  # found when there
    backup = tmp_path / "backup"
    shutil.copytree(desk.state, backup)  # yesterday's backup of the blob store
    assert audit.seal(desk.app.sessions) > 0  # the events about Ivan are in the chain
    with desk.app.sessions() as session:
        ivan_key = session.scalar(select(ContactKey.id).join(Contact).where(
            Contact.address == "ivan@mail.test"))
        ivan_secret = desk.app.vault.key(session, ivan_key).secret if keys else b""

    result = desk.cli("privacy", "erase", "ivan@mail.test", "--yes", "--by", "dpo@casino.test")
    assert result.exit_code == 0, result.output

    after = dump_database(desk.app)
    assert _traces_in(after) == []
    needles = [PASSPORT[:40], b"card ending 4417", b"Deposit of 300 EUR"]
    assert not any(n in data for _, data in stored_bytes(desk.state) for n in needles)
    if keys:  # the backup still holds Ivan's sealed files, and no key left opens them
        with desk.app.sessions() as session:
            assert session.get(ContactKey, ivan_key).wrapped is None
            live = [desk.app.vault.key(session, k.id) for k in session.scalars(
                select(ContactKey).where(ContactKey.wrapped.is_not(None)))]
            with pytest.raises(KeyDestroyed):
                desk.app.vault.key(session, ivan_key)
        current = set(sealed_files(desk.state).values())
        gone = {p: data for p, data in sealed_files(backup).items() if data not in current}
        assert len(gone) >= 4  # three raw mails and the passport
        for path, data in gone.items():
            assert open_sealed(ivan_secret, data, associated(path))  # his key opened them
            for key in live:
                with pytest.raises(WrongKey):
                    open_sealed(key.secret, data, associated(path))
    with desk.app.sessions() as session:
        olga = session.scalar(select(Ticket).where(Ticket.number == olgas))
        assert olga.subject == "Bonus not credited"
        assert olga.requester.address == "olga@mail.test"
        [message] = [m for m in olga.messages if m.direction == "in"]
        assert message.visible_text == "My welcome bonus is missing."
        key = desk.app.vault.key(session, message.key_id) if keys else None
        assert desk.app.blobs.get_raw(message.raw_sha256, key) == olga_raw
        assert desk.app.blobs.get_attachment(message.attachments[0].sha256, key) == OLGA_SCAN
        erased = [session.scalar(select(Ticket).where(Ticket.number == n)) for n in ivans]
        assert all(t.subject == "" and t.status == "closed" for t in erased)
        assert all(t.brand == "default" for t in erased)  # which brand stays: no person in it
    assert _running_clocks(desk, ivans) == 0  # nothing escalates a blanked ticket
    with desk.app.sessions() as session:
        [event] = session.scalars(select(Event).where(Event.kind == "erased")).all()
        assert event.actor == "dpo@casino.test" and sorted(event.data["tickets"]) == ivans
        assert event.data["messages"] >= 3 and event.data["files"] >= 4
        assert event.data["key_destroyed"] is bool(keys)
        assert session.scalars(select(Erasure)).one().erased_by == "dpo@casino.test"
        assert all(m.full_text == "" for m in session.scalars(
            select(Message).where(Message.ticket_id.in_([t.id for t in erased]))))

    audit.seal(desk.app.sessions)
    with desk.app.sessions() as session:
        verdict = audit.verify(session)
    assert verdict.broken is None and verdict.redacted > 0  # redacted, and the chain holds
    again = desk.cli("privacy", "erase", "ivan@mail.test", "--yes")  # recognised by its tombstone
    assert again.exit_code == 1 and "already erased" in again.output


def test_erase_is_refused_while_a_legal_hold_covers_a_ticket_of_theirs(desk_factory) -> None:  # noqa: ANN001
    desk = desk_factory([KEY_A])
    ivans, _, _ = populate(desk)
    with desk.app.sessions.begin() as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == ivans[1]))
        hold = holds.place(session, reason="regulator inquiry 2026-17", by="compliance",
                           ticket_id=ticket.id)
    files = sealed_files(desk.state)
    result = desk.cli("privacy", "erase", "ivan@mail.test", "--yes")
    assert result.exit_code == 1
    assert "refused" in result.output and f"hold {hold}" in result.output
    assert "regulator inquiry" in result.output
    kept = dump_database(desk.app).lower()
    assert all(trace.lower() in kept for trace in IVAN_TRACES)
    assert sealed_files(desk.state) == files
    with desk.app.sessions() as session:
        assert session.scalars(select(ContactKey).where(ContactKey.wrapped.is_(None))).all() == []
    with desk.app.sessions.begin() as session:
        holds.release(session, by="compliance", ticket_id=ticket.id)
    assert desk.cli("privacy", "erase", "ivan@mail.test", "--yes").exit_code == 0


def test_erase_asks_on_a_terminal_and_refuses_a_script_without_yes(desk_factory) -> None:  # noqa: ANN001
    desk = desk_factory([KEY_A])
    populate(desk)
    result = desk.cli("privacy", "erase", "ivan@mail.test")  # standard input is no terminal
    assert result.exit_code == 2 and "--yes" in result.output
    assert "ivan@mail.test" in dump_database(desk.app)


def test_a_mail_from_an_erased_address_starts_afresh(desk_factory) -> None:  # noqa: ANN001
    desk = desk_factory([KEY_A])
    populate(desk)
    assert desk.cli("privacy", "erase", "ivan@mail.test", "--yes").exit_code == 0
    raw = complaint(IVAN, "Hello again", "New account, new question.",
                    message_id="<i9@mail.test>")
    number = desk.ingest(raw)
    with desk.app.sessions() as session:
        tomb = erased_before(session, "ivan@mail.test")
        [returned] = session.scalars(select(Event).where(
            Event.kind == "contact_returned_after_erasure")).all()
        assert returned.data["erasure"] == tomb.id and "ivan" not in str(returned.data)
        destroyed = session.scalars(select(ContactKey).where(ContactKey.wrapped.is_(None))).one()
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket.requester.address == "ivan@mail.test"
        [message] = [m for m in ticket.messages if m.direction == "in"]
        assert message.key_id != destroyed.id  # a new data key, not the destroyed one
        key = desk.app.vault.key(session, message.key_id)
        assert desk.app.blobs.get_raw(message.raw_sha256, key) == raw


@pytest.mark.parametrize("keys", [[KEY_A], None], ids=["key_file", "no_key_file"])
def test_erase_keeps_a_file_another_person_sent_too(desk_factory, keys) -> None:  # noqa: ANN001
    """In clear, files are named by their content alone: the casino's logo, or the same
    screenshot two players attached, is one file that erasing one of them must not take."""
    desk = desk_factory(keys)
    logo = b"\x89PNG\r\n\x1a\n the casino's logo, forwarded by both players " * 30
    desk.ingest(complaint(IVAN, "Logo", "Is this your site?", message_id="<l1.ivan@mail.test>",
                          attachments=(("logo.png", "image/png", logo),)))
    olgas = desk.ingest(complaint(OLGA, "Same logo", "Phishing?", message_id="<l1@mail.test>",
                                  attachments=(("logo.png", "image/png", logo),)))
    result = desk.cli("privacy", "erase", "ivan@mail.test", "--yes")
    assert result.exit_code == 0, result.output
    with desk.app.sessions() as session:
        olga = session.scalar(select(Ticket).where(Ticket.number == olgas))
        [message] = [m for m in olga.messages if m.direction == "in"]
        key = desk.app.vault.key(session, message.key_id) if keys else None
        assert desk.app.blobs.get_attachment(message.attachments[0].sha256, key) == logo


def _running_clocks(desk, numbers: list[int]) -> int:  # noqa: ANN001
    with desk.app.sessions() as session:
        return len(session.scalars(select(SlaClock.id).join(
            Ticket, Ticket.id == SlaClock.ticket_id).where(
            Ticket.number.in_(numbers), SlaClock.stopped_at.is_(None))).all())


def _sealed_opened(backup: Path, secrets: list[bytes]) -> list[bytes]:
    """What every key in `secrets` opens of the sealed files in `backup`, raw mails
    decompressed: what a holder of the master key could read from an old backup."""
    opened = []
    for path, data in sealed_files(backup).items():
        for secret in secrets:
            try:
                plain = open_sealed(secret, data, associated(path))
            except WrongKey:
                continue
            opened.append(gzip.decompress(plain) if plain[:2] == b"\x1f\x8b" else plain)
    return opened


def test_erase_shreds_agents_replies_relays_and_notifications_about_the_person(
        db_url: str, tmp_path: Path) -> None:
    """An agent's reply quotes the player; the relay and the agents' notification carry the
    player's words too. Each is sealed with the player's key, so after the erasure no key
    left opens anything of theirs, in the store or in a backup of it."""
    from daemon.ingest import Ingestor, IngestPolicy
    from daemon.team import Agent, TeamPolicy
    from responders.identity import Identity
    from responders.rendering import Templates
    from storage import db
    from storage.blobs import BlobStore
    from storage.crypto import MasterKeys
    from storage.erasure import erase
    from storage.models import OutboxMessage
    from storage.outbox import plain_raw
    from storage.vault import Vault
    from tests.support.agents import AUTHSERV, reply_to_notification

    keys = (b"agents-test-key-0123456789abcdef",)
    team = TeamPolicy(
        Identity("support@casino.test", "Casino Support", keys, Templates()),
        agents={"anna@casino.test": Agent("anna@casino.test", "Anna", ("payments",))},
        routing={"refund": "payments"}, authserv_id=AUTHSERV)
    policy = IngestPolicy(support_addresses=frozenset({"support@casino.test"}), keys=keys,
                          team=team, agents=frozenset(team.agents), authserv_id=AUTHSERV)
    vault = Vault(MasterKeys.of((b"m" * 32,)))
    sessions = db.session_factory(db.make_engine(db_url), vault)
    blobs = BlobStore(tmp_path / "state")
    ingestor = Ingestor(sessions, blobs, policy)
    ingestor.ingest(complaint(IVAN, "Refund of deposit 300 EUR vanished",
                              "Paid with card ending 4417, refund please.",
                              message_id="<i1.ivan@mail.test>"), "t")
    with sessions() as session:
        [note] = [plain_raw(session, r.raw, r.key_id, r.message_id) for r in session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "notification"))]
    assert b"4417" in note  # the agents' notification carries his words
    reply = reply_to_notification(note, "Refund sent today to the card ending 4417.")
    assert ingestor.ingest(reply, "t").reason == "agent reply"
    ingestor.ingest(complaint(OLGA, "Bonus not credited", "My welcome bonus is missing.",
                              message_id="<o1@mail.test>"), "t")
    backup = tmp_path / "backup"
    shutil.copytree(blobs.root, backup)
    with sessions() as session:
        secrets = [vault.key(session, k.id).secret for k in session.scalars(select(ContactKey))]
    traces = [b"4417", b"ivan@mail.test", b"300 EUR vanished"]
    assert any(t in plain for plain in _sealed_opened(backup, secrets) for t in traces)

    with sessions.begin() as session:
        erase(session, blobs, "ivan@mail.test", "dpo")
    with sessions() as session:
        live = [vault.key(session, k.id).secret for k in session.scalars(
            select(ContactKey).where(ContactKey.wrapped.is_not(None)))]
        left = [plain_raw(session, r.raw, r.key_id, r.message_id)
                for r in session.scalars(select(OutboxMessage))]
    assert left and not any(t in plain for plain in left for t in traces)  # Olga's only
    opened = _sealed_opened(backup, live)
    assert opened and any(b"welcome bonus" in plain for plain in opened)  # Olga's, still
    assert [t for plain in opened for t in traces if t in plain] == []
    assert not any(t in data for _, data in stored_bytes(blobs.root) for t in traces)
    sessions.kw["bind"].dispose()


def test_erase_deletes_the_persons_quarantined_attachment(
        db_url: str, tmp_path: Path, clamd) -> None:  # noqa: ANN001
    from daemon.ingest import Ingestor, IngestPolicy
    from daemon.safety import Screener
    from daemon.scan import ClamdScanner
    from storage import db
    from storage.blobs import BlobStore
    from storage.crypto import MasterKeys
    from storage.erasure import erase
    from storage.vault import Vault
    from tests.support.clamd import EICAR

    policy = IngestPolicy(support_addresses=frozenset({"support@casino.test"}),
                          keys=(b"quarantine-test-key-0123456789ab",))
    vault = Vault(MasterKeys.of((b"q" * 32,)))
    sessions = db.session_factory(db.make_engine(db_url), vault)
    blobs = BlobStore(tmp_path / "state")
    ingestor = Ingestor(sessions, blobs, policy,
                        Screener(ClamdScanner(socket_path=clamd.socket_path)))
    ingestor.ingest(complaint(IVAN, "Invoice attached", "See the invoice.",
                              message_id="<q1.ivan@mail.test>",
                              attachments=(("invoice.com", "application/octet-stream", EICAR),)),
                    "t")
    quarantined = list((blobs.root / "quarantine").rglob("*.sealed"))
    assert len(quarantined) == 1
    with sessions.begin() as session:
        erase(session, blobs, "ivan@mail.test", "dpo")
    assert list((blobs.root / "quarantine").rglob("*.sealed")) == []
    sessions.kw["bind"].dispose()
