"""The escalation mails, read back from the bytes queued in the outbox."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta, timezone

import pytest
from sqlalchemy import update

from daemon.sla import MonitorDesk, SlaMonitor, SlaOptions
from responders.escalation import EscalationContext, escalation
from responders.headers import UnsafeRecipient
from responders.identity import Identity
from responders.references import numbers_in_subject, verify_message_id
from storage.models import Ticket
from tests.sla.conftest import DESK, HEAD, KEYS, LEAD, T0, at, parse

QUESTION = "Hello,\nmy withdrawal of 500 EUR is missing since Monday.\nPlease check."


def test_the_warning_names_the_ticket_the_wait_and_how_to_take_it(new_ticket, monitor,
                                                                  look) -> None:
    ticket = new_ticket(text=QUESTION, subject="Re: Withdrawal missing")
    number = ticket + 10000
    monitor.run_once(at(hours=19, minutes=13))
    [(_, recipients, raw)] = look.mails(ticket)
    assert raw.isascii() and recipients == [DESK]
    mail = parse(raw)
    assert mail["To"] == DESK and mail["From"] == "Casino Support <support@casino.test>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["X-Ticketd-Loop"] == "support@casino.test"
    assert numbers_in_subject(mail["Subject"]) == (number,)
    assert mail["Subject"].startswith("SLA warning: first response due in 4 hours 47 minutes")
    assert "Re:" not in mail["Subject"]
    assert verify_message_id(mail["Message-ID"], KEYS) == number  # a reply threads to it
    body = mail.get_content()
    assert f"Ticket [#{number}] will miss its first response time in 4 hours 47 minutes" in body
    assert "Waiting:   19 hours 13 minutes" in body
    assert "Held by:   nobody" in body
    assert "#assign me" in body.splitlines()  # a line of its own, to be replied as it is
    assert "> my withdrawal of 500 EUR is missing since Monday." in body


def test_level1_goes_to_the_team_lead_and_level2_to_the_head(new_ticket, monitor,
                                                            look) -> None:
    ticket = new_ticket(text=QUESTION)
    monitor.run_once(at(hours=24, minutes=1))
    monitor.run_once(at(hours=28, minutes=30))
    level1, level2 = (parse(raw) for _, _, raw in look.mails(ticket))
    assert level1["To"] == LEAD and level1["Subject"].startswith("SLA breached: first response")
    assert "has missed its first response time of 24 hours" in level1.get_content()
    assert level2["To"] == HEAD
    assert level2["Subject"].startswith("SLA breach, level 2: first response overdue by "
                                        "4 hours 30 minutes")
    assert "Waiting:   28 hours 30 minutes" in level2.get_content()
    assert level1["Message-ID"] != level2["Message-ID"]


def test_an_assigned_ticket_warns_its_assignee_and_says_who_holds_it(new_ticket, sessions,
                                                                    monitor, look) -> None:
    ticket = new_ticket(text=QUESTION)
    with sessions.begin() as session:
        session.execute(update(Ticket).where(Ticket.id == ticket).values(
            assignee="ann@casino.test"))
    monitor.run_once(at(hours=19, minutes=13))
    monitor.run_once(at(hours=24, minutes=1))
    warning, level1 = (parse(raw) for _, _, raw in look.mails(ticket))
    assert warning["To"] == "ann@casino.test" and level1["To"] == LEAD
    assert "Held by:   ann@casino.test" in level1.get_content()


def test_in_russian_for_a_russian_desk(new_ticket, sessions, options, identity, look) -> None:
    ticket = new_ticket(text="Здравствуйте! Не пришёл вывод 500 рублей.", language="ru")
    russian = SlaMonitor(sessions, MonitorDesk(options, replace(identity, language="ru")))
    russian.run_once(at(hours=21, minutes=1))
    mail = parse(look.mails(ticket)[0][2])
    assert mail["Subject"].startswith("Предупреждение SLA: срок «первый ответ» истекает через "
                                      "2 часа 59 минут")
    body = mail.get_content()
    assert "Ожидание:   21 час 1 минута" in body and "Кто ведёт:  никто" in body
    assert "#assign me" in body and "> Здравствуйте! Не пришёл вывод 500 рублей." in body


CTX = EscalationContext(
    ticket_number=10042, stage=2, clock_kind="resolution", policy="default",
    promised=timedelta(hours=72), started_at=T0, due_at=at(hours=72), now=at(hours=73),
    subject="Refund\r\nBcc: victim@example.org", question="x" * 5000, nonce="sla7s2",
)


def _compose(ctx: EscalationContext = CTX, to: str = LEAD):  # noqa: ANN202
    return escalation(ctx, Identity("support@casino.test", "Casino Support", KEYS), to=to)


def test_a_players_subject_cannot_add_headers_and_a_long_text_is_cut() -> None:
    mail = parse(_compose().as_bytes())
    assert mail["Bcc"] is None and "victim@example.org" in mail["Subject"]
    quoted = [line for line in mail.get_content().splitlines() if line.startswith("> ")]
    assert len(quoted[0]) <= 2002 and quoted[0].endswith("…")


def test_the_same_clock_and_stage_give_the_same_message_id() -> None:
    assert _compose()["Message-ID"] == _compose()["Message-ID"]
    assert _compose()["Message-ID"] != _compose(replace(CTX, nonce="sla7s3"))["Message-ID"]


@pytest.mark.parametrize("to", ["support@casino.test", "a@x.test, b@x.test", "not an address"])
def test_no_escalation_to_ourselves_or_to_anything_but_one_mailbox(to: str) -> None:
    with pytest.raises(UnsafeRecipient):
        _compose(to=to)


def test_mails_of_one_pass_share_the_desk_headers_but_each_has_its_own_moment() -> None:
    """What depends only on the desk, the staff address and the moment is worked out once a
    pass; a desk of another name, an address that changes or the same moment written with
    another offset still gets its own headers."""
    first, again = _compose(), _compose()
    assert (first["From"], first["To"], first["Date"]) == (again["From"], again["To"],
                                                           again["Date"])
    other = escalation(CTX, Identity("support@casino.test", "Другая служба", KEYS), to=HEAD)
    assert "Другая служба" in str(other["From"]) and HEAD in str(other["To"])
    moved = _compose(replace(CTX, now=CTX.now.astimezone(timezone(timedelta(hours=2)))))
    assert moved["Date"].endswith("+0200") and first["Date"].endswith(("+0000", "-0000"))
    assert moved["Date"].datetime == first["Date"].datetime
    with pytest.raises(UnsafeRecipient):  # a refused address is refused every time
        _compose(to="support@casino.test")
    with pytest.raises(UnsafeRecipient):
        _compose(to="support@casino.test")


@dataclass(frozen=True)
class BrandedDesk:
    """A desk that knows brands, as the daemon's runtime value does."""

    sla: SlaOptions
    identity: Identity
    brands: dict[str, Identity]

    def brand(self, name: str | None) -> Identity:
        return self.brands.get(name or "default") or self.identity


def test_each_escalation_of_a_pass_speaks_as_its_tickets_brand_in_the_desks_language(
        new_ticket, sessions, options, identity, look) -> None:
    poker = Identity("support@poker.test", "Poker Support", KEYS, identity.templates,
                     language="ru", brand="poker")
    desk = BrandedDesk(options, identity, {"default": identity, "poker": poker})
    tickets = [new_ticket(text=QUESTION) for _ in range(4)]
    with sessions.begin() as session:  # brands interleaved within the one batch
        session.execute(update(Ticket).where(Ticket.id.in_(tickets[1::2])).values(
            brand="poker"))
    SlaMonitor(sessions, desk).run_once(at(hours=19, minutes=13))
    for ticket, sender in zip(tickets, ["Casino Support <support@casino.test>",
                                        "Poker Support <support@poker.test>"] * 2,
                              strict=True):
        [(_, _, raw)] = look.mails(ticket)
        mail = parse(raw)
        assert mail["From"] == sender
        assert mail["Subject"].startswith("SLA warning: first response due")  # English
