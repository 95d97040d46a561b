"""The player's language through the real ingest path, on SQLite and PostgreSQL: the
acknowledgement and the relay in it, the contact's language remembered, the brand's default
when a mail tells nothing, and notifications to the agents of the group who speak it."""

from __future__ import annotations

import email
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.ingest import Ingestor, IngestPolicy
from daemon.team import Agent, TeamPolicy
from responders.acks import AckPolicy
from responders.identity import Identity
from responders.rendering import Templates
from storage import db
from storage.blobs import BlobStore
from storage.models import Contact, OutboxMessage, Ticket
from tests.support.agents import AUTHSERV, reply_to_notification
from tests.support.mails import mail

SUPPORT = "support@casino.test"
KEYS = (b"languages-test-key-0123456789abc",)
PAYMENTS = {
    "anna@casino.test": Agent("anna@casino.test", "Anna", ("payments",), ("ru", "en")),
    "carlos@casino.test": Agent("carlos@casino.test", "Carlos", ("payments",), ("es", "pt-BR")),
    "dana@casino.test": Agent("dana@casino.test", "Dana", ("payments",), ("ru", "kk")),
}


def desk(language: str = "en") -> Identity:
    return Identity(SUPPORT, "Casino Support", KEYS, Templates(default_language=language),
                    language=language)


def make_ingestor(db_url: str, tmp_path: Path, language: str = "en") -> Ingestor:
    identity = desk(language)
    team = TeamPolicy(identity, agents=PAYMENTS, default_group="payments",
                      authserv_id=AUTHSERV)
    policy = IngestPolicy(support_addresses=frozenset({SUPPORT}), keys=KEYS,
                          ack=AckPolicy(identity), team=team, agents=frozenset(PAYMENTS),
                          authserv_id=AUTHSERV, default_language=language)
    return Ingestor(db.session_factory(db.make_engine(db_url)), BlobStore(tmp_path), policy)


@pytest.fixture
def ingestor(db_url: str, tmp_path: Path) -> Ingestor:
    return make_ingestor(db_url, tmp_path)


def sent(ingestor: Ingestor, kind: str) -> list[OutboxMessage]:
    with ingestor.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)
                                    .order_by(OutboxMessage.id)))


def notified(ingestor: Ingestor) -> list[list[str]]:
    """Who was notified of each ticket, in the order of the tickets: one row per recipient,
    as each notification's Message-ID is that recipient's credential."""
    by_ticket: dict[int, list[str]] = {}
    for row in sent(ingestor, "notification"):
        by_ticket.setdefault(row.ticket_id, []).extend(row.recipients)
    return [sorted(by_ticket[ticket]) for ticket in sorted(by_ticket)]


def text_of(row: OutboxMessage) -> tuple[str, str]:
    msg = email.message_from_bytes(row.raw, policy=default)
    return str(msg["Subject"]), msg.get_body(("plain",)).get_content()


def contact_language(ingestor: Ingestor, address: str) -> str | None:
    with ingestor.sessions() as session:
        return session.scalar(select(Contact.language).where(Contact.address == address))


GERMAN = mail("Jonas Weber <jonas@mail.test>", "Auszahlung fehlt",
              "Guten Tag, meine Auszahlung von 200 Euro ist seit fünf Tagen nicht angekommen. "
              "Bitte prüfen Sie das und zahlen Sie mir das Geld zurück.")


def test_a_german_complaint_is_acknowledged_in_german(ingestor: Ingestor) -> None:
    number = ingestor.ingest(GERMAN, "t").ticket_number
    [ack] = sent(ingestor, "ack")
    subject, body = text_of(ack)
    assert subject.startswith("Wir haben Ihre Anfrage erhalten") and f"[#{number}]" in subject
    assert "Guten Tag Jonas Weber," in body and "Frist für unsere erste Antwort:" in body
    assert "Stunden" in body and "hours" not in body and "reply" not in body.lower()
    assert "##- Bitte schreiben Sie Ihre Antwort über dieser Zeile -##" in body
    with ingestor.sessions() as session:
        assert session.scalar(select(Ticket.language).where(Ticket.number == number)) == "de"
    assert contact_language(ingestor, "jonas@mail.test") == "de"


def test_a_mail_that_tells_nothing_is_answered_in_the_language_the_player_wrote_before(
        ingestor: Ingestor) -> None:
    ingestor.ingest(mail("Aliya <aliya@mail.test>", "Депозит",
                         "Сәлеметсіз бе, кеше шотыма 10000 теңге салдым, бірақ ақша түспеді."), "t")
    ingestor.ingest(mail("Aliya <aliya@mail.test>", "#77120", "77120 / 10000"), "t")
    first, second = sent(ingestor, "ack")
    assert text_of(first)[0].startswith("Өтінішіңізді алдық")
    assert text_of(second)[0].startswith("Өтінішіңізді алдық")
    assert contact_language(ingestor, "aliya@mail.test") == "kk"


def test_the_brands_default_language_when_the_player_is_unknown_and_the_mail_tells_nothing(
        db_url: str, tmp_path: Path) -> None:
    ingestor = make_ingestor(db_url, tmp_path, language="tr")
    ingestor.ingest(mail("<someone@mail.test>", "#55102", "55102 - 500 TL"), "t")
    [ack] = sent(ingestor, "ack")
    assert text_of(ack)[0].startswith("Talebinizi aldık")
    assert contact_language(ingestor, "someone@mail.test") is None  # nothing to remember


def test_notifications_go_to_the_agents_of_the_group_who_speak_the_players_language(
        ingestor: Ingestor) -> None:
    ingestor.ingest(mail("<lucia@mail.test>", "Reembolso",
                         "Hola, quiero el reembolso de mi depósito, el dinero no llegó."), "t")
    ingestor.ingest(mail("<joao@mail.test>", "Reembolso do depósito",
                         "Olá, quero o reembolso do meu depósito, o dinheiro não caiu."), "t")
    ingestor.ingest(mail("<ivan@mail.test>", "Возврат депозита",
                         "Здравствуйте, верните депозит, деньги не пришли."), "t")
    spanish, portuguese, russian = notified(ingestor)
    assert spanish == ["carlos@casino.test"]
    assert portuguese == ["carlos@casino.test"]  # "pt-BR" speaks "pt"
    assert russian == ["anna@casino.test", "dana@casino.test"]


def test_when_no_agent_of_the_group_speaks_it_the_whole_group_is_notified(
        ingestor: Ingestor) -> None:
    ingestor.ingest(GERMAN.replace(b"Auszahlung fehlt", b"Erstattung der Einzahlung"), "t")
    [everyone] = notified(ingestor)
    assert everyone == sorted(PAYMENTS)
    assert all("Please refund" not in text_of(note)[1] for note in sent(ingestor, "notification"))


def test_the_agents_reply_reaches_the_player_with_the_players_language_around_it(
        ingestor: Ingestor) -> None:
    number = ingestor.ingest(mail("<emre@mail.test>", "Para iadesi",
                                  "Merhaba, yatırdığım para bakiyeme geçmedi, lütfen iade edin."),
                             "t").ticket_number
    [note] = [row for row in sent(ingestor, "notification") if row.recipients == ["anna@casino.test"]]
    ingestor.ingest(reply_to_notification(note.raw, "Merhaba, iadeniz yapıldı."), "t")
    [relayed] = sent(ingestor, "relay")
    _, body = text_of(relayed)
    assert f"Talep [#{number}]: yanıt vermek için bu iletiyi yanıtlayın" in body
    assert "##- Lütfen yanıtınızı bu satırın üstüne yazın -##" in body


def test_a_group_mailbox_still_gets_what_every_member_or_no_member_speaks() -> None:
    team = TeamPolicy(desk(), agents=PAYMENTS, group_addresses={"payments": "pay@casino.test"})
    assert [a.addr for a in team.recipients("payments", None, "ru")] == [
        "anna@casino.test", "dana@casino.test"]  # some speak it: they, not the mailbox
    assert [a.addr for a in team.recipients("payments", None, "de")] == ["pay@casino.test"]
    assert [a.addr for a in team.recipients("payments", None, None)] == ["pay@casino.test"]
    assert [a.addr for a in team.recipients("payments", "carlos@casino.test", "ru")] == [
        "carlos@casino.test"]  # the assignee holds the ticket whatever the language
