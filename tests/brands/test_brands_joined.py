"""A player writing at one brand's mailbox about another brand's ticket, on SQLite and
PostgreSQL: once the mail has joined the ticket, the team hears of it as the ticket's brand,
and a loop on that ticket is stopped and summarised under that brand too."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default
from email.utils import parseaddr
from pathlib import Path

from sqlalchemy import select, update

from daemon.app import App
from storage.models import AutoMail, Event, OutboxMessage, Ticket, utcnow
from tests.support.desks import DESK, desk_from
from tests.support.mails import mail

CONFIG = DESK + """
[outbox]
ops_address = "ops@ops.test"

[loops]
per_ticket = {per_ticket}
notify_every = "1s"

[team]
agents = [{{ address = "anna@desk.test", name = "Anna", groups = ["support"] }}]

[[brands]]
name = "lucky"
address = "help@lucky.test"
display_name = "Lucky Casino Help"
signature = "Lucky Casino, Malta"

[[brands]]
name = "stars"
address = "support@stars.test"
display_name = "Stars Poker Support"
signature = "Stars Poker, Gibraltar"
"""


def _desk(db_url: str, tmp_path: Path, per_ticket: int = 10) -> App:
    return desk_from(CONFIG.format(url=db_url, per_ticket=per_ticket), tmp_path,
                     "brand-joined-key-0123456789")


def _rows(desk: App, kind: str) -> list[OutboxMessage]:
    with desk.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)
                                    .order_by(OutboxMessage.id)))


def _parsed(row: OutboxMessage) -> EmailMessage:
    return email.message_from_bytes(row.raw, policy=default)  # type: ignore[return-value]


def _text(row: OutboxMessage) -> str:
    body = _parsed(row).get_body(("plain",))
    assert body is not None
    return body.get_content()


def _sent_now(desk: App) -> None:
    """The outbox delivered what is queued just now, as its loop would have: the next
    notification is then one more mail, not folded into one still waiting."""
    with desk.sessions.begin() as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.state == "pending")
                        .values(state="sent", sent_at=utcnow()))


def _lucky_ticket_answered_at_stars(desk: App, answers: int) -> Ticket:
    """Sam asks lucky, then answers lucky's acknowledgement `answers` times, each at stars'
    mailbox."""
    desk.ingestor_for("lucky").ingest(mail(
        sender="Sam <sam@player.test>", to="help@lucky.test", subject="Bonus terms",
        body="Why was my bonus cancelled?"))
    [ack] = _rows(desk, "ack")
    _sent_now(desk)
    for n in range(answers):
        done = desk.ingestor_for("stars").ingest(mail(
            sender="Sam <sam@player.test>", to="support@stars.test",
            subject="Re: Bonus terms", body=f"Any news about my bonus? ({n})",
            in_reply_to=f"<{ack.message_id}>"))
        assert done.outcome == "follow_up"
        _sent_now(desk)
    with desk.sessions() as session:
        ticket = session.scalar(select(Ticket))
        assert ticket is not None and ticket.brand == "lucky"
        session.expunge(ticket)
        return ticket


def test_the_team_hears_of_a_mail_at_another_brands_mailbox_as_the_tickets_brand(
        db_url: str, tmp_path: Path) -> None:
    desk = _desk(db_url, tmp_path)
    _lucky_ticket_answered_at_stars(desk, answers=1)
    first, joined = _rows(desk, "notification")
    assert joined.recipients == ["anna@desk.test"]
    assert joined.envelope_from == first.envelope_from == "help@lucky.test"
    parsed = _parsed(joined)
    assert parseaddr(str(parsed["From"])) == ("Lucky Casino Help", "help@lucky.test")
    # Anna's answer goes to lucky's signed reply address, so it is relayed as lucky.
    reply_to = parseaddr(str(parsed["Reply-To"]))
    assert reply_to[0] == "Lucky Casino Help"
    assert reply_to[1].startswith("help+") and reply_to[1].endswith("@lucky.test")
    assert parsed["Message-ID"].endswith("@lucky.test>")
    text = _text(joined)
    assert "Brand: Lucky Casino Help" in text
    assert "Stars Poker" not in text


def test_a_loop_through_another_brands_mailbox_stops_under_the_tickets_brand(
        db_url: str, tmp_path: Path) -> None:
    # The acknowledgement and the first notification are 2 of 3; the first answer at stars'
    # mailbox is notified (3), the second stops the ticket, the third finds it stopped.
    desk = _desk(db_url, tmp_path, per_ticket=3)
    ticket = _lucky_ticket_answered_at_stars(desk, answers=3)
    assert len(_rows(desk, "notification")) == 2
    [summary] = _rows(desk, "loop_summary")
    assert summary.recipients == ["ops@ops.test"] and summary.ticket_id == ticket.id
    assert summary.envelope_from == "help@lucky.test"
    parsed = _parsed(summary)
    assert parseaddr(str(parsed["From"])) == ("Lucky Casino Help", "help@lucky.test")
    assert parsed["X-Ticketd-Loop"] == "help@lucky.test"
    assert f"#{ticket.number}" in str(parsed["Subject"])
    assert "Automatic mail stopped" in str(parsed["Subject"])  # operations read the desk's
    assert "Lucky Casino Help" in _text(summary)
    with desk.sessions() as session:
        stopped = session.scalars(select(Event).where(Event.kind == "loop_stopped")).all()
        counted = session.scalars(select(AutoMail.kind).where(AutoMail.ticket_id == ticket.id)
                                  .order_by(AutoMail.id)).all()
    assert [e.ticket_id for e in stopped] == [ticket.id]
    assert sorted(counted) == ["ack", "notification", "notification"]  # the ticket's own count


def test_a_new_tickets_loop_is_summarised_under_its_mailboxs_brand(
        db_url: str, tmp_path: Path) -> None:
    # One automatic mail per ticket: the notification goes, the acknowledgement stops it.
    desk = _desk(db_url, tmp_path, per_ticket=1)
    desk.ingestor_for("stars").ingest(mail(
        sender="Ivan <ivan@player.test>", to="support@stars.test", subject="Tournament",
        body="Is the Friday tournament still on?"))
    assert _rows(desk, "ack") == []
    [summary] = _rows(desk, "loop_summary")
    assert summary.envelope_from == "support@stars.test"
    assert parseaddr(str(_parsed(summary)["From"])) == ("Stars Poker Support",
                                                         "support@stars.test")
