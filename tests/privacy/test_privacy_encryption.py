"""Encryption at rest on SQLite and PostgreSQL: nothing of a mail readable under the storage
path or in the outbox rows, everything readable back with the key, master keys rotated by
re-wrapping, a wrong or exposed key file refused by doctor (DESIGN invariant 9)."""

from __future__ import annotations

import asyncio
import email
import shutil
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import select

from config import ConfigError, load_settings
from daemon import doctor
from daemon.outbox import OutboxSender
from storage.crypto import WrongKey
from storage.db import SchemaError
from storage.models import ContactKey, IngestRecord, Message, OutboxMessage
from tests.outbox.smtp_sink import Sink, SmtpServer, free_port, transport_to
from tests.privacy.conftest import (
    KEY_A,
    KEY_B,
    KEY_WRONG,
    complaint,
    found_in_files,
    stored_bytes,
    write_key_file,
)
from tests.support.mails import PNG

SUBJECT = "Withdrawal blocked after passport upload"
BODY = "My passport number is 7712 889900 and my IBAN DE44500105175407324931."
PASSPORT = b"%PDF-1.4 passport scan of Ivan Petrov, number 7712 889900 " * 40


def the_mail(sender: str = "Ivan Petrov <ivan@mail.test>", message_id: str = "<ivan-1@mail.test>"
             ) -> bytes:
    return complaint(sender, SUBJECT, BODY, message_id=message_id,
                     attachments=(("passport.pdf", "application/pdf", PASSPORT),))


NEEDLES = [SUBJECT.encode(), BODY.encode(), b"7712 889900", PASSPORT[:60]]


@pytest.mark.parametrize("encrypted", [True, False], ids=["key_file", "no_key_file"])
def test_no_plaintext_of_a_mail_is_under_the_storage_path_only_with_a_key_file(
        desk_factory, encrypted: bool) -> None:  # noqa: ANN001
    desk = desk_factory([KEY_A] if encrypted else None)
    assert desk.ingest(the_mail())
    assert any(desk.state.rglob("*")), "nothing was stored"
    found = found_in_files(desk.state, NEEDLES)
    if encrypted:
        assert found == set()
        assert all(p.suffix == ".sealed" for p, _ in stored_bytes(desk.state / "raw"))
    else:  # the same search finds the same mail stored in clear: the test can fail
        assert found == set(NEEDLES)


def test_outgoing_mail_is_sealed_in_the_database_and_sent_in_clear(desk_factory) -> None:  # noqa: ANN001
    desk = desk_factory([KEY_A])
    number = desk.ingest(the_mail())
    with desk.app.sessions() as session:
        [row] = session.scalars(select(OutboxMessage)).all()
        assert row.key_id is not None
        assert f"[#{number}]".encode() not in row.raw and b"Withdrawal" not in row.raw
    sink = SmtpServer(Sink(), free_port()).start()
    try:
        sender = OutboxSender(desk.app.sessions, transport_to(sink.port), ops_address=None)
        asyncio.run(sender.drain())
    finally:
        sink.stop()
    [received] = sink.handler.received
    ack = email.message_from_bytes(received.content, policy=default)
    assert f"[#{number}]" in ack["Subject"] and received.rcpt_tos == ("ivan@mail.test",)


def test_what_is_sealed_reads_back_byte_for_byte(desk_factory) -> None:  # noqa: ANN001
    desk = desk_factory([KEY_A])
    raw = the_mail()
    desk.ingest(raw)
    blobs, vault = desk.app.blobs, desk.app.vault
    with desk.app.sessions() as session:
        message = session.scalars(select(Message).where(Message.direction == "in")).one()
        key = vault.key(session, message.key_id)
        assert blobs.get_raw(message.raw_sha256, key) == raw
        [attachment] = message.attachments
        assert blobs.get_attachment(attachment.sha256, key) == PASSPORT
        record = session.scalars(select(IngestRecord)).one()
        assert record.key_id == message.key_id


def test_one_contact_stores_content_once_two_contacts_share_no_file(desk_factory) -> None:  # noqa: ANN001
    desk = desk_factory([KEY_A])
    shared = (("terms.png", "image/png", PNG),)
    desk.ingest(complaint("a@mail.test", "One", "first", message_id="<a1@m>", attachments=shared))
    desk.ingest(complaint("a@mail.test", "Two", "second", message_id="<a2@m>", attachments=shared))
    desk.ingest(complaint("b@mail.test", "Three", "third", message_id="<b1@m>", attachments=shared))
    files = list((desk.state / "attachments").rglob("*.sealed"))
    assert len(files) == 2  # a's two copies are one file; b's is another
    with desk.app.sessions() as session:
        rows = session.scalars(select(Message).where(Message.direction == "in")
                               .order_by(Message.id)).all()
        keys = [desk.app.vault.key(session, m.key_id) for m in rows]
        digest = rows[0].attachments[0].sha256
    assert keys[0] == keys[1] != keys[2]
    a_file, b_file = (desk.app.blobs.attachment_path(digest, k) for k in (keys[0], keys[2]))
    assert a_file != b_file and digest not in a_file.name
    with pytest.raises(WrongKey):  # a's file does not open with b's key
        shutil.copyfile(a_file, b_file)
        desk.app.blobs.get_attachment(digest, keys[2])


def test_a_sealed_file_opens_only_under_its_own_name(desk_factory) -> None:  # noqa: ANN001
    desk = desk_factory([KEY_A])
    desk.ingest(complaint("a@mail.test", "One", "first", message_id="<a1@m>"))
    desk.ingest(complaint("a@mail.test", "Two", "second", message_id="<a2@m>"))
    with desk.app.sessions() as session:
        first, second = session.scalars(select(Message).where(Message.direction == "in")
                                        .order_by(Message.id)).all()
        key = desk.app.vault.key(session, first.key_id)
    blobs = desk.app.blobs
    shutil.copyfile(blobs.raw_path(first.raw_sha256, key), blobs.raw_path(second.raw_sha256, key))
    with pytest.raises(WrongKey):
        blobs.get_raw(second.raw_sha256, key)


def test_rotating_the_master_key_rewraps_data_keys_and_keeps_everything_readable(
        desk_factory) -> None:  # noqa: ANN001
    desk = desk_factory([KEY_A])
    raw = the_mail()
    desk.ingest(raw)
    before = {p: p.read_bytes() for p in desk.state.rglob("*.sealed")}
    rotated = desk.rebuilt([KEY_B, KEY_A])  # a new first line
    result = rotated.cli("privacy", "rotate-master")
    assert result.exit_code == 0, result.output
    assert "re-wrapped" in result.output
    newest = rotated.app.vault.masters.newest.id
    with rotated.app.sessions() as session:
        assert {k.master_key_id for k in session.scalars(select(ContactKey))} == {newest}
    assert {p: p.read_bytes() for p in desk.state.rglob("*.sealed")} == before  # no re-encryption
    only_new = desk.rebuilt([KEY_B])  # the old line dropped
    with only_new.app.sessions() as session:
        message = session.scalars(select(Message).where(Message.direction == "in")).one()
        key = only_new.app.vault.key(session, message.key_id)
        assert only_new.app.blobs.get_raw(message.raw_sha256, key) == raw
    [ack] = only_new.outbox_plain()
    assert b"Auto-Submitted: auto-replied" in ack
    assert next(c for c in doctor.run_checks(only_new.app.settings)
                if c.name == "encryption").ok


def _encryption_check(config: Path) -> doctor.Check:
    settings = load_settings(config, environ={})
    return next(c for c in doctor.run_checks(settings) if c.name == "encryption")


def test_doctor_refuses_a_wrong_key_and_an_exposed_key_file_and_warns_when_off(
        desk_factory) -> None:  # noqa: ANN001
    desk = desk_factory([KEY_A])
    desk.ingest(the_mail())
    check = _encryption_check(desk.config)
    assert check.ok and not check.warning and "on:" in check.detail
    key_file = desk.config.parent / "master-key"
    write_key_file(key_file, [KEY_WRONG])
    check = _encryption_check(desk.config)
    assert not check.ok and "not in the key file" in check.detail
    write_key_file(key_file, [KEY_A])
    key_file.chmod(0o644)  # refused with every secret file others can read, at load
    with pytest.raises(ConfigError, match="privacy.key_file.*chmod"):
        load_settings(desk.config, environ={})
    key_file.chmod(0o600)
    config = desk.config.read_text().split("[privacy]")[0]
    desk.config.write_text(config)
    check = _encryption_check(desk.config)
    assert check.ok and check.warning and "off" in check.detail


def test_a_data_key_copied_onto_another_contact_does_not_open(desk_factory) -> None:  # noqa: ANN001
    desk = desk_factory([KEY_A])
    desk.ingest(complaint("a@mail.test", "One", "first", message_id="<a1@m>"))
    desk.ingest(complaint("b@mail.test", "Two", "second", message_id="<b1@m>"))
    with desk.app.sessions.begin() as session:
        a, b = session.scalars(select(ContactKey).where(ContactKey.contact_id.is_not(None))
                               .order_by(ContactKey.id)).all()
        b.wrapped = a.wrapped  # someone with the database swaps keys between contacts
    with desk.app.sessions() as session, pytest.raises(WrongKey):
        desk.app.vault.key(session, b.id)


def test_agents_mail_and_relays_are_sealed_and_the_relay_carries_the_agents_attachment(
        db_url: str, tmp_path: Path) -> None:
    from daemon.ingest import Ingestor, IngestPolicy
    from daemon.team import Agent, TeamPolicy
    from responders.identity import Identity
    from responders.rendering import Templates
    from storage import db
    from storage.blobs import BlobStore
    from storage.crypto import MasterKeys
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
    ingestor = Ingestor(sessions, BlobStore(tmp_path / "state"), policy)
    ingestor.ingest(the_mail(), "t")

    def rows(kind: str) -> list[bytes]:
        with sessions() as session:
            found = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)
                                    .order_by(OutboxMessage.id)).all()
            assert all(r.key_id is not None and b"Withdrawal" not in r.raw for r in found)
            return [plain_raw(session, r.raw, r.key_id, r.message_id) for r in found]

    [note] = rows("notification")
    reply = email.message_from_bytes(reply_to_notification(note, "Refund sent today."),
                                     policy=default)
    reply.add_attachment(b"%PDF-1.4 refund receipt", maintype="application", subtype="pdf",
                         filename="refund.pdf")
    assert ingestor.ingest(reply.as_bytes(), "t").reason == "agent reply"
    [relay] = rows("relay")
    [attached] = email.message_from_bytes(relay, policy=default).iter_attachments()
    assert attached.get_content() == b"%PDF-1.4 refund receipt"
    assert found_in_files(tmp_path / "state", NEEDLES + [b"refund receipt"]) == set()
    with sessions() as session:
        player, agent = (session.scalars(select(Message).where(Message.direction == d)
                                         .order_by(Message.id)).first() for d in ("in", "out"))
        assert player.key_id == agent.key_id  # the reply quotes the player: the player's key
        key = vault.key(session, agent.key_id)
        assert ingestor.blobs.get_raw(agent.raw_sha256, key) == reply.as_bytes()


def test_with_a_wrong_key_file_mail_waits_in_the_mailbox_and_nothing_is_stored(
        desk_factory) -> None:  # noqa: ANN001
    from daemon.ingest import TemporaryFailure

    desk = desk_factory([KEY_A])
    desk.ingest(the_mail())
    if desk.app.engine.dialect.name == "sqlite":  # the sealed database itself does not open
        with pytest.raises(SchemaError, match="not in the key file"):
            desk.rebuilt([KEY_WRONG])
        return
    wrong = desk.rebuilt([KEY_WRONG])
    with pytest.raises(TemporaryFailure, match="not in the key file"):
        wrong.ingest(the_mail(message_id="<ivan-2@mail.test>"))
    with wrong.app.sessions() as session:
        assert len(session.scalars(select(IngestRecord)).all()) == 1


def test_the_key_file_may_be_a_systemd_credential(desk_factory, monkeypatch) -> None:  # noqa: ANN001
    desk = desk_factory([KEY_A])
    desk.ingest(the_mail())
    credentials = desk.config.parent / "credentials"
    credentials.mkdir(mode=0o700)
    shutil.copy(desk.config.parent / "master-key", credentials / "master-key")
    (credentials / "master-key").chmod(0o400)
    desk.config.write_text(desk.config.read_text().replace(
        str(desk.config.parent / "master-key"), "credential:master-key"))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    check = next(c for c in doctor.run_checks(load_settings(desk.config))
                 if c.name == "encryption")
    assert check.ok and not check.warning, check.detail


def test_hostile_senders_in_one_batch_are_sealed_without_failing_the_others(
        desk_factory) -> None:  # noqa: ANN001
    from tests.drills.hostile import empty, many_recipients, nul_bytes

    desk = desk_factory([KEY_A])
    long_sender = "x" * 400 + "@mail.test"
    batch = [the_mail(), nul_bytes(), many_recipients(), empty(),
             complaint(f"Long <{long_sender}>", "Long sender", "Mine is long.",
                       message_id="<long@mail.test>"),
             b"Subject: no sender at all\r\n\r\nWho am I?\r\n"]
    results = desk.app.ingestor.ingest_many([(raw, f"t{n}") for n, raw in enumerate(batch)])
    assert [r.outcome for r in results][:4] == ["ticket", "ticket", "ticket", "quarantined"]
    assert results[0].ticket_number
    with desk.app.sessions() as session:
        records = session.scalars(select(IngestRecord).order_by(IngestRecord.id)).all()
        assert len(records) == len(batch)
        assert all(r.key_id is not None for r in records)
        desk_key = desk.app.vault.desk_key(session).id
        by_source = {r.source: r.key_id for r in records}
        assert by_source["t5"] == by_source["t3"] == desk_key  # no sender: the desk's key
        assert by_source["t4"] == desk_key  # an address too long to be a contact: the same
        assert by_source["t0"] != desk_key
    assert found_in_files(desk.state, NEEDLES + [b"Who am I?", b"Mine is long."]) == set()


def test_an_outgoing_mail_that_no_longer_opens_is_dead_and_the_others_go(
        desk_factory) -> None:  # noqa: ANN001
    """A queued mail whose key was destroyed meanwhile, or whose bytes were altered, is
    marked dead with the reason (no retry can open it); the rest of the pass is sent."""
    from sqlalchemy import update

    desk = desk_factory([KEY_A])
    for name in ("anna", "boris", "carl"):
        desk.ingest(complaint(f"{name}@mail.test", f"Question of {name}", "Where is my refund?",
                              message_id=f"<{name}@mail.test>"))
    with desk.app.sessions.begin() as session:
        anna, boris, carl = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        session.execute(update(ContactKey).where(ContactKey.id == anna.key_id).values(
            wrapped=None, master_key_id=None))  # destroyed, as by an erasure elsewhere
        boris.raw = boris.raw[:-1] + bytes([boris.raw[-1] ^ 1])
    sink = SmtpServer(Sink(), free_port()).start()
    try:
        sender = OutboxSender(desk.app.sessions, transport_to(sink.port), ops_address=None)
        asyncio.run(sender.drain())
    finally:
        sink.stop()
    assert [r.rcpt_tos for r in sink.handler.received] == [("carl@mail.test",)]
    with desk.app.sessions() as session:
        rows = {r.id: r for r in session.scalars(select(OutboxMessage))}
    assert rows[anna.id].state == "dead" and "KeyDestroyed" in rows[anna.id].last_error
    assert rows[boris.id].state == "dead" and "WrongKey" in rows[boris.id].last_error
    assert rows[carl.id].state == "sent"
