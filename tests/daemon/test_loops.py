"""Loops end within a few messages (DESIGN invariant 3), on SQLite and PostgreSQL: limits per
ticket and address with one summary, responder signs without Auto-Submitted, no ticket from
an agent's own mail, coalesced notifications, held notices that quote no attacker."""

from __future__ import annotations

import asyncio
import email
from datetime import UTC, datetime, timedelta
from email.policy import default
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from config import Settings
from daemon.ingest import Ingestor, IngestPolicy
from daemon.retention import KeeperPlan, RecordsKeeper, prune_loop_ledger
from daemon.runtime import loop_policy
from daemon.team import Agent, TeamPolicy
from responders.acks import AckPolicy
from responders.identity import Identity
from responders.loops import LoopPolicy
from responders.rendering import Templates
from storage import db, queries
from storage import loops as loop_ledger
from storage.blobs import BlobStore
from storage.models import AutoMail, Event, Message, OutboxMessage, Ticket, utcnow
from tests.support.agents import AUTHSERV, reply_to_notification
from tests.support.mails import mail

SUPPORT = "support@casino.test"
OPS = "ops@casino.test"
KEYS = (b"loops-test-key-0123456789abcdef0",)
DESK = Identity(SUPPORT, "Casino Support", KEYS, Templates())
LOOPS = LoopPolicy(team_addresses=frozenset({"anna@casino.test", "lead@casino.test"}),
                   summary_to=(OPS,), summary_from=SUPPORT)
TEAM = TeamPolicy(
    DESK, agents={"anna@casino.test": Agent("anna@casino.test", "Anna Smirnova", ("payments",))},
    staff={"lead@casino.test": Agent("lead@casino.test", "Team lead")},
    routing={"refund": "payments"}, authserv_id=AUTHSERV, loops=LOOPS)
ATTACKER_URL = "https://evil.example/verify"


def make(db_url: str, tmp_path: Path, loops: LoopPolicy = LOOPS) -> Ingestor:
    team = TeamPolicy(**{**TEAM.__dict__, "loops": loops})
    policy = IngestPolicy(support_addresses=frozenset({SUPPORT}), keys=KEYS,
                          ack=AckPolicy(DESK, loops=loops), team=team,
                          agents=frozenset((*team.agents, *team.staff)), authserv_id=AUTHSERV,
                          loops=loops)
    return Ingestor(db.session_factory(db.make_engine(db_url)), BlobStore(tmp_path), policy)


@pytest.fixture
def ingestor(db_url: str, tmp_path: Path) -> Ingestor:
    return make(db_url, tmp_path)


def outbox(ingestor: Ingestor, kind: str) -> list[OutboxMessage]:
    with ingestor.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)
                                    .order_by(OutboxMessage.id)))


def events(ingestor: Ingestor, kind: str) -> list[Event]:
    with ingestor.sessions() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind)))


def complaint(ingestor: Ingestor) -> int:
    raw = mail(subject="Refund of my deposit", body="Please refund my deposit of 100 EUR.",
               message_id="<player-q@mail.test>")
    return ingestor.ingest(raw, "t").ticket_number


def follow_up(ingestor: Ingestor, n: int, **kw) -> str:  # noqa: ANN003
    raw = mail(subject="Re: Refund of my deposit", body=kw.pop("body", f"Still waiting ({n})."),
               message_id=f"<f{n}@mail.test>", in_reply_to="<player-q@mail.test>", **kw)
    return ingestor.ingest(raw, "t").outcome


def sent_now(ingestor: Ingestor, kind: str) -> None:
    """The outbox delivered these rows just now (as its loop would have)."""
    with ingestor.sessions.begin() as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.kind == kind)
                        .values(state="sent", sent_at=utcnow()))


def test_sixty_follow_ups_in_a_minute_give_one_notification_and_one_deferred(
        ingestor: Ingestor) -> None:
    complaint(ingestor)
    sent_now(ingestor, "notification")
    for n in range(60):
        follow_up(ingestor, n)
    first, deferred = outbox(ingestor, "notification")
    assert first.state == "sent"
    assert deferred.state == "pending" and deferred.attempts == 0
    assert deferred.next_attempt_at >= first.sent_at + LOOPS.notify_every - timedelta(seconds=1)
    text = email.message_from_bytes(deferred.raw, policy=default).get_body(("plain",)).get_content()
    assert "Follow-ups came in a burst" in text
    assert len(events(ingestor, "notification_coalesced")) == 59


def test_thirty_forged_agent_mails_give_a_handful_of_notices_quoting_nothing(
        ingestor: Ingestor) -> None:
    complaint(ingestor)
    [note] = outbox(ingestor, "notification")
    for n in range(30):
        spoof = email.message_from_bytes(reply_to_notification(
            note.raw, f"#status closed\nLog in at {ATTACKER_URL}?n={n} to confirm.", auth=(),
            sender=f'"Anna {ATTACKER_URL}" <anna@casino.test>'), policy=default)
        spoof.replace_header("Subject", f"Urgent: verify your account {ATTACKER_URL}")
        assert ingestor.ingest(spoof.as_bytes(), "t").reason.startswith("agent held")
    notices = outbox(ingestor, "held_notice")
    assert len(events(ingestor, "agent_mail_held")) == 30
    assert len(notices) == LOOPS.held_notices_per_hour + 1
    for notice in notices:
        assert b"evil.example" not in notice.raw and b"Urgent" not in notice.raw
        assert notice.recipients == ["anna@casino.test"]
    last = email.message_from_bytes(notices[-1].raw, policy=default)
    assert "No further notice" in last.get_body(("plain",)).get_content()


def forged_forward(n: int) -> bytes:
    """A `Fwd:` in Anna's name that our MTA did not authenticate, full of a forger's words."""
    body = ("Please handle this one.\n\n---------- Forwarded message ---------\n"
            "From: Petr <petr@players.test>\nDate: Mon, 23 Nov 2026 10:00\n"
            f"Subject: Withdrawal missing {ATTACKER_URL}\nTo: anna@casino.test\n\n"
            f"My withdrawal is missing, log in at {ATTACKER_URL}?n={n} to check.\n")
    return mail(sender=f'"Anna {ATTACKER_URL}" <anna@casino.test>',
                subject=f"Fwd: Withdrawal missing {ATTACKER_URL}", body=body,
                message_id=f"<fwd{n}@casino.test>",
                headers={"Authentication-Results": f"{AUTHSERV}; dkim=pass header.d=evil.example"})


def test_a_forward_not_authenticated_is_quarantined_and_the_agent_told_within_limits(
        ingestor: Ingestor) -> None:
    for n in range(30):
        result = ingestor.ingest(forged_forward(n), "t")
        assert (result.outcome, result.ticket_number) == ("quarantined", None)
        assert "not authenticated" in result.reason
    with ingestor.sessions() as session:
        assert session.scalar(select(Ticket.id)) is None
    assert events(ingestor, "staff_mail_without_ticket") == []
    assert len(events(ingestor, "agent_mail_held")) == 30
    notices = outbox(ingestor, "held_notice")
    assert len(notices) == LOOPS.held_notices_per_hour + 1  # a handful, then one summary
    for notice in notices:
        assert notice.recipients == ["anna@casino.test"]
        for attacker in (b"evil.example", b"Withdrawal", b"petr@players.test", b"Petr"):
            assert attacker not in notice.raw
    first = email.message_from_bytes(notices[0].raw, policy=default)
    text = first.get_body(("plain",)).get_content()
    assert "forward" in text and "was not accepted" in text and "quarantine" in text
    assert "not authenticated as yours" in text


def test_an_authenticated_forward_is_no_held_mail(ingestor: Ingestor) -> None:
    raw = forged_forward(1).replace(b"header.d=evil.example", b"header.d=casino.test")
    result = ingestor.ingest(raw, "t")
    assert result.outcome == "ticket"
    assert events(ingestor, "agent_mail_held") == [] and outbox(ingestor, "held_notice") == []


@pytest.mark.parametrize("sender", ["Anna Smirnova <anna@casino.test>", "lead@casino.test"])
def test_an_agents_or_staff_mail_naming_no_ticket_opens_none(ingestor: Ingestor,
                                                             sender: str) -> None:
    result = ingestor.ingest(mail(sender=sender, subject="Out of office",
                                  body="I am away until Monday."), "t")
    assert (result.outcome, result.ticket_number) == ("ignored", None)
    assert "agent or staff address" in result.reason
    with ingestor.sessions() as session:
        assert session.scalar(select(Ticket.id)) is None
    assert outbox(ingestor, "ack") == [] and outbox(ingestor, "notification") == []
    assert len(events(ingestor, "staff_mail_without_ticket")) == 1


@pytest.mark.parametrize("subject", ["Out of office: Refund of my deposit", "Abwesend",
                                     "Отсутствую до понедельника", "Автоответ",
                                     "Automatic reply: Refund", "Autoreply",
                                     "Réponse automatique : Refund"])
def test_an_out_of_office_subject_without_auto_submitted_sends_nothing(
        ingestor: Ingestor, subject: str) -> None:
    number = complaint(ingestor)
    raw = mail(subject=subject, body="I will read your mail when I am back.",
               message_id="<ooo@mail.test>", in_reply_to="<player-q@mail.test>")
    result = ingestor.ingest(raw, "t")
    assert result.outcome == "follow_up" and result.ticket_number == number
    assert result.reason.startswith("automated")
    assert len(outbox(ingestor, "notification")) == 1  # the complaint's, nothing more
    with ingestor.sessions() as session:
        kinds = session.scalars(select(Message.kind).where(Message.direction == "in")).all()
    assert kinds == ["complaint", "auto_reply"]


def test_an_answer_within_seconds_of_our_mail_is_a_responders(ingestor: Ingestor) -> None:
    complaint(ingestor)
    sent_now(ingestor, "ack")
    [ack] = outbox(ingestor, "ack")
    def answer(n: int, date: datetime) -> bytes:
        msg = email.message_from_bytes(mail(
            subject="Re: Refund of my deposit", body=f"Thank you for your message ({n}).",
            message_id=f"<r{n}@mail.test>", in_reply_to=f"<{ack.message_id}>"), policy=default)
        msg.replace_header("Date", format_datetime(date))
        return msg.as_bytes()

    # A person's client dates the mail when they press send: later than that.
    person = ingestor.ingest(answer(1, ack.sent_at + timedelta(seconds=40)), "t")
    assert person.reason == ""
    assert len(outbox(ingestor, "notification")) == 2
    # Once within seconds may be a fast person; twice is a program.
    fast = ingestor.ingest(answer(2, ack.sent_at + timedelta(seconds=2)), "t")
    assert fast.reason == ""
    quick = ingestor.ingest(answer(3, ack.sent_at + timedelta(seconds=3)), "t")
    assert quick.reason.startswith("automated: responder: written ")
    assert quick.reason.endswith(" s after our mail to the sender, again")
    with ingestor.sessions() as session:
        kinds = session.scalars(select(Message.kind).where(Message.direction == "in")
                                .order_by(Message.id)).all()
    assert kinds == ["complaint", "follow_up", "follow_up", "auto_reply"]
    # Counted in the loop ledger, not written as events that nothing would ever remove.
    assert events(ingestor, "quick_answer") == [] == events(ingestor, "auto_reply_sent")
    with ingestor.sessions() as session:
        marks = session.scalars(select(AutoMail.address).where(
            AutoMail.kind == "quick_answer")).all()
    assert marks == ["player@mail.test", "player@mail.test"]


def test_a_player_asking_the_same_twice_is_a_person(ingestor: Ingestor) -> None:
    """A text said again is no sign alone: "any news?" twice is a person waiting."""
    complaint(ingestor)
    assert follow_up(ingestor, 1, body="Any news?") == "follow_up"
    second = ingestor.ingest(mail(subject="Re: Refund of my deposit", body="any  NEWS?",
                                  message_id="<f2@mail.test>",
                                  in_reply_to="<player-q@mail.test>"), "t")
    assert second.reason == ""
    with ingestor.sessions() as session:
        kinds = session.scalars(select(Message.kind).where(Message.direction == "in")
                                .order_by(Message.id)).all()
    assert kinds == ["complaint", "follow_up", "follow_up"]
    assert events(ingestor, "auto_reply") == []


def test_an_agents_canned_answer_sent_twice_is_relayed_twice(ingestor: Ingestor) -> None:
    complaint(ingestor)
    [first] = outbox(ingestor, "notification")
    canned = "Thank you for your patience. Your request is with the payments team."
    assert ingestor.ingest(reply_to_notification(first.raw, canned), "t").reason == "agent reply"
    follow_up(ingestor, 1, body="And when will it arrive?")
    second = outbox(ingestor, "notification")[-1]
    assert second.id != first.id
    assert ingestor.ingest(reply_to_notification(second.raw, canned), "t").reason == "agent reply"
    assert len(outbox(ingestor, "relay")) == 2


def test_a_responder_repeating_its_text_within_seconds_of_our_mail_is_caught(
        ingestor: Ingestor) -> None:
    """The repeated text with a second sign: dated within seconds of our last mail to the
    address (here it answers the player's own earlier mail, not ours: the newest automatic
    mail to the address is what it is measured against)."""
    complaint(ingestor)
    away = "Thank you for your mail. I am away until Monday."
    assert follow_up(ingestor, 1, body=away) == "follow_up"  # a person may write that once
    note = outbox(ingestor, "notification")[0]
    ingestor.ingest(reply_to_notification(note.raw, "Your refund went out today."), "t")
    sent_now(ingestor, "relay")
    [relayed] = outbox(ingestor, "relay")
    msg = email.message_from_bytes(mail(subject="Re: Refund of my deposit", body=away,
                                        message_id="<away2@mail.test>",
                                        in_reply_to="<player-q@mail.test>"), policy=default)
    msg.replace_header("Date", format_datetime(relayed.sent_at.replace(tzinfo=UTC)
                                               + timedelta(seconds=1)))
    result = ingestor.ingest(msg.as_bytes(), "t")
    assert result.reason.startswith("automated: responder: repeats the sender's earlier text")
    assert "s after our mail" in result.reason
    with ingestor.sessions() as session:
        kinds = session.scalars(select(Message.kind).where(Message.direction == "in")
                                .order_by(Message.id)).all()
    assert kinds == ["complaint", "follow_up", "auto_reply"]


def test_a_runaway_ticket_stops_with_one_summary_until_an_agent_acts(
        db_url: str, tmp_path: Path) -> None:
    loops = LoopPolicy(**{**LOOPS.__dict__, "per_ticket": 3, "notify_every": timedelta(0),
                          "responder_seconds": 0})
    ingestor = make(db_url, tmp_path, loops)
    number = complaint(ingestor)  # ack + notification: 2 of 3
    for n in range(10):
        follow_up(ingestor, n)
    assert len(outbox(ingestor, "ack")) + len(outbox(ingestor, "notification")) == 3
    [summary] = outbox(ingestor, "loop_summary")
    assert summary.recipients == [OPS]
    assert b"Auto-Submitted: auto-generated" in summary.raw
    assert len(events(ingestor, "loop_stopped")) == 1
    assert len(events(ingestor, "auto_mail_withheld")) == 9
    with ingestor.sessions() as session:
        lines, _ = queries.find_tickets(session, queries.TicketFilter(loop_stopped=True))
    assert [line.number for line in lines] == [number]
    # A plain reply is relayed (an agent's words) but ends nothing: a responder writes those.
    [note] = outbox(ingestor, "notification")[:1]
    ingestor.ingest(reply_to_notification(note.raw, "Your refund went out today."), "t")
    assert len(outbox(ingestor, "relay")) == 1
    assert events(ingestor, "loop_resumed") == []
    notified = len(outbox(ingestor, "notification"))
    follow_up(ingestor, 99)
    assert len(outbox(ingestor, "notification")) == notified
    # A command is a person acting: the flag goes, automatic mail may go again.
    ingestor.ingest(reply_to_notification(note.raw, "#status open"), "t")
    assert len(events(ingestor, "loop_resumed")) == 1
    with ingestor.sessions() as session:
        assert session.scalar(select(Ticket.loop_stopped_at)) is None
        # The ticket's count starts again; the player's acknowledgement still counts
        # against their address (the acknowledgement limit is per address).
        acks = session.execute(select(AutoMail.address, AutoMail.ticket_id)
                               .where(AutoMail.kind == "ack")).all()
    assert [(a, t) for a, t in acks] == [("player@mail.test", None)]


def test_a_busy_team_mailbox_over_its_daily_count_stops_no_ticket(
        db_url: str, tmp_path: Path) -> None:
    """Anna's address over its day's count withholds her notification, but the new player's
    ticket is no loop: it is not stopped and nobody gets a loop summary."""
    loops = LoopPolicy(**{**LOOPS.__dict__, "per_team_address": 2,
                          "notify_every": timedelta(0), "responder_seconds": 0})
    ingestor = make(db_url, tmp_path, loops)
    for n in range(3):
        ingestor.ingest(mail(sender=f"player{n}@mail.test", subject="Refund of my deposit",
                             body=f"Please refund my deposit of {n}00 EUR.",
                             message_id=f"<busy{n}@mail.test>"), "t")
    assert len(outbox(ingestor, "notification")) == 2  # the third is withheld ...
    assert len(events(ingestor, "auto_mail_withheld")) == 1
    assert events(ingestor, "loop_stopped") == [] == outbox(ingestor, "loop_summary")
    with ingestor.sessions() as session:  # ... and no ticket is flagged as a loop
        assert session.scalars(select(Ticket.loop_stopped_at)).all() == [None, None, None]


def test_after_an_agents_answer_the_players_next_mail_is_notified_at_once(
        ingestor: Ingestor) -> None:
    complaint(ingestor)
    sent_now(ingestor, "notification")
    [note] = outbox(ingestor, "notification")
    ingestor.ingest(reply_to_notification(note.raw, "Your refund went out today."), "t")
    assert len(outbox(ingestor, "relay")) == 1
    follow_up(ingestor, 1, body="It has not arrived.")
    first, second = outbox(ingestor, "notification")
    assert second.next_attempt_at <= utcnow()  # a live conversation is not held back


def ledger_earlier(ingestor: Ingestor, by: timedelta) -> None:
    """Everything the loop ledger counted happened `by` earlier (time passing, without sleep)."""
    with ingestor.sessions.begin() as session:
        for row in session.scalars(select(AutoMail)):
            row.created_at -= by


def test_a_slow_loop_under_the_ten_minute_limit_stops_at_the_daily_cap(
        db_url: str, tmp_path: Path) -> None:
    """One answer every quarter of an hour never reaches 3 in 10 minutes, but the ticket's
    day count does: stopped, flagged, one summary, like the fast limit."""
    loops = LoopPolicy(**{**LOOPS.__dict__, "per_ticket": 3, "per_ticket_day": 6,
                          "notify_every": timedelta(0), "responder_seconds": 0})
    ingestor = make(db_url, tmp_path, loops)
    number = complaint(ingestor)  # ack + notification: 2 of the day's 6
    for n in range(10):
        ledger_earlier(ingestor, timedelta(minutes=15))
        follow_up(ingestor, n)
    assert len(outbox(ingestor, "ack")) + len(outbox(ingestor, "notification")) == 6
    [stopped] = events(ingestor, "loop_stopped")
    assert stopped.data["reason"] == "loop limit: 6 automatic mails about this ticket within 1 d"
    assert len(events(ingestor, "auto_mail_withheld")) == 6
    [summary] = outbox(ingestor, "loop_summary")
    text = email.message_from_bytes(summary.raw, policy=default).get_body(("plain",)).get_content()
    assert f"#{number}" in text and "the daily limit" in text
    with ingestor.sessions() as session:
        assert session.scalar(select(Ticket.loop_stopped_at)) is not None


def test_after_a_reassignment_the_new_assignee_is_notified_at_once(ingestor: Ingestor) -> None:
    """Coalescing is per recipient: Anna's notification just went, but the lead it was
    reassigned to has had none, so the next follow-up reaches the lead now."""
    complaint(ingestor)
    sent_now(ingestor, "notification")
    [note] = outbox(ingestor, "notification")
    assert note.recipients == ["anna@casino.test"]
    ingestor.ingest(reply_to_notification(note.raw, "#assign lead@casino.test"), "t")
    follow_up(ingestor, 1, body="Is anybody there?")
    lead = outbox(ingestor, "notification")[-1]
    assert lead.recipients == ["lead@casino.test"]
    assert lead.next_attempt_at <= utcnow()
    text = email.message_from_bytes(lead.raw, policy=default).get_body(("plain",)).get_content()
    assert "Follow-ups came in a burst" not in text
    assert events(ingestor, "notification_coalesced") == []
    # The lead's own pace from now on: the next follow-up waits for the lead's pause.
    follow_up(ingestor, 2, body="Hello?")
    deferred = outbox(ingestor, "notification")[-1]
    assert deferred.recipients == ["lead@casino.test"] and deferred.id != lead.id
    assert deferred.next_attempt_at > utcnow()


def test_the_check_of_a_mail_deletes_nothing_and_counts_only_its_window(
        ingestor: Ingestor) -> None:
    """Rows older than every window stay until the records task prunes them (no DELETE on
    the path of a mail), and no count takes them: 50 acknowledgements two days ago are
    over every limit of the address, yet the new ticket is acknowledged."""
    old = utcnow() - timedelta(days=2)
    with ingestor.sessions.begin() as session:
        loop_ledger.record(session, None, ["player@mail.test"] * 50, "ack", 1, old)
    complaint(ingestor)
    assert len(outbox(ingestor, "ack")) == 1
    with ingestor.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AutoMail)
                              .where(AutoMail.created_at < utcnow() - LOOPS.kept)) == 50
    assert prune_loop_ledger(ingestor.sessions, LOOPS.kept) == 50
    with ingestor.sessions() as session:
        kinds = session.scalars(select(AutoMail.kind).order_by(AutoMail.id)).all()
    assert sorted(kinds) == ["ack", "notification"]  # this ticket's, within the windows


def test_the_records_task_prunes_the_ledger_once_an_interval(ingestor: Ingestor) -> None:
    with ingestor.sessions.begin() as session:
        loop_ledger.record(session, None, ["player@mail.test"] * 3, "ack", 1,
                           utcnow() - timedelta(days=3))
    keeper = RecordsKeeper(ingestor.sessions, lambda: KeeperPlan(
        None, seal_every=0.05, sweep_every=3600, ledger_kept=LOOPS.kept, prune_every=3600))

    def left() -> int:
        with ingestor.sessions() as session:
            return session.scalar(select(func.count()).select_from(AutoMail)) or 0

    async def run_until_pruned() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(keeper.run(stop))
        for _ in range(300):  # at most half a minute on a slow machine
            await asyncio.sleep(0.1)
            if left() == 0:
                break
        stop.set()
        await task

    asyncio.run(run_until_pruned())
    assert left() == 0


def test_the_summary_is_in_each_readers_language(db_url: str, tmp_path: Path) -> None:
    """Operations read the desk's language; an agent configured with Russian reads Russian."""
    loops = LoopPolicy(**{**LOOPS.__dict__, "per_ticket": 2, "notify_every": timedelta(0),
                          "summary_to": (OPS, "anna@casino.test"),
                          "summary_languages": (("anna@casino.test", "ru"),), "desk": DESK})
    ingestor = make(db_url, tmp_path, loops)
    number = complaint(ingestor)
    follow_up(ingestor, 1)
    english, russian = outbox(ingestor, "loop_summary")
    assert (english.recipients, russian.recipients) == ([OPS], ["anna@casino.test"])
    for row, words in ((english, "Automatic mail stopped"), (russian, "остановлены")):
        parsed = email.message_from_bytes(row.raw, policy=default)
        assert words in str(parsed["Subject"]) and f"#{number}" in str(parsed["Subject"])
        assert parsed["Auto-Submitted"] == "auto-generated"
    assert len(events(ingestor, "loop_stopped")) == 1


def test_an_agents_language_is_the_first_they_were_configured_with() -> None:
    settings = Settings.model_validate({
        "database": {"url": "sqlite://"}, "support": {"default_language": "de"},
        "team": {"agents": [
            {"address": "anna@casino.test", "name": "Anna", "languages": ["ru", "en"]},
            {"address": "boris@casino.test", "name": "Boris"}]}})
    identity = Identity(SUPPORT, "Casino Support", KEYS, Templates(), language="de")
    policy = loop_policy(settings, identity)
    assert policy.summary_to == ("anna@casino.test", "boris@casino.test")  # no ops, no leads
    assert policy.summary_languages == (("anna@casino.test", "ru"),)  # Boris: the desk's
    assert policy.desk == identity and policy.per_ticket_day == 20
