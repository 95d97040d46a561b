"""Staff who are not agents (the SLA recipients), on SQLite and PostgreSQL: a team lead answers
an escalation with `#assign me` and holds the ticket, authenticated exactly like an agent; the
same mail unauthenticated is held. The desk is built from a real configuration file."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from datetime import timedelta
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import select

from config import load_settings
from daemon import app as app_mod
from daemon.app import App
from storage.models import Event, OutboxMessage, Ticket, utcnow
from tests.support.agents import AUTHSERV, reply_to_notification
from tests.support.configs import write_config
from tests.support.mails import mail

SECRET = "staff-test-secret-0123456789abcdef"
LEAD = "lead@casino.test"
PLAYER = "player@mail.test"
AGENTS = """
[[team.agents]]
address = "anna@casino.test"
name = "Anna Smirnova"
groups = ["payments"]
"""


def configure(tmp_path: Path, db_url: str) -> Path:
    config = write_config(
        tmp_path, db_url,
        smtp={"host": "127.0.0.1", "port": 2525, "tls": "none"},  # nothing is sent here
        security={"authserv_id": AUTHSERV},
        sla={"team_lead_address": LEAD, "head_of_support_address": "head@casino.test"},
    )
    config.write_text(config.read_text() + AGENTS)
    return config


@pytest.fixture
def desk(db_url: str, tmp_path: Path) -> App:
    settings = load_settings(configure(tmp_path, db_url), {"TICKETD_SECURITY__SECRET": SECRET})
    return app_mod.build(settings)


def rows(application: App, kind: str) -> list[OutboxMessage]:
    with application.sessions() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)
                                    .order_by(OutboxMessage.id)))


def the_ticket(application: App, number: int) -> Ticket:
    with application.sessions() as session:
        found = session.scalar(select(Ticket).where(Ticket.number == number))
        assert found is not None
        return found


def events(application: App, kind: str) -> list[Event]:
    with application.sessions() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind)))


def escalated_complaint(application: App) -> tuple[int, bytes]:
    """A player's complaint nobody answers; a day later the lead gets the breach escalation."""
    raw = mail(sender=f"Sam Player <{PLAYER}>", subject="Refund of my deposit",
               body="Please refund my deposit of 100 EUR.", message_id="<staff-q@mail.test>")
    number = application.ingestor.ingest(raw, "t").ticket_number
    assert number is not None
    application.sla_monitor().run_once(utcnow() + timedelta(hours=25))
    [to_lead] = [r for r in rows(application, "escalation") if r.recipients == [LEAD]]
    return number, to_lead.raw


def test_a_lead_who_is_no_agent_takes_the_ticket_with_assign_me(desk: App) -> None:
    number, escalation = escalated_complaint(desk)
    answer = reply_to_notification(escalation, "#assign me", sender=f"Lea Lead <{LEAD}>")
    result = desk.ingestor.ingest(answer, "t")
    assert result.reason == "agent commands", result
    assert the_ticket(desk, number).assignee == LEAD
    [assigned] = events(desk, "command_assign")
    assert assigned.data["argument"] == "me" and assigned.actor == "Team lead"
    # The player writes again: the lead, who holds the ticket now, is told, and the
    # notification names the player as the requester, never the lead.
    follow_up = mail(sender=f"Sam Player <{PLAYER}>", subject=f"Re: [#{number}] Refund",
                     body="Any news about my refund?", message_id="<staff-f@mail.test>",
                     in_reply_to="<staff-q@mail.test>")
    assert desk.ingestor.ingest(follow_up, "t").outcome == "follow_up"
    note = rows(desk, "notification")[-1]
    assert note.recipients == [LEAD]
    body = email.message_from_bytes(note.raw, policy=default).get_body(("plain",)).get_content()
    assert f"Requester: Sam Player <{PLAYER}>" in body
    assert LEAD not in body.split("Requester:")[1].splitlines()[0]


def test_the_same_answer_unauthenticated_is_held(desk: App) -> None:
    number, escalation = escalated_complaint(desk)
    forged = reply_to_notification(escalation, "#assign me", sender=f"Lea Lead <{LEAD}>",
                                   auth=())
    result = desk.ingestor.ingest(forged, "t")
    assert result.reason.startswith("agent held"), result
    assert the_ticket(desk, number).assignee is None
    assert events(desk, "command_assign") == []
    [held] = events(desk, "agent_mail_held")
    assert held.actor == LEAD
    [notice] = rows(desk, "held_notice")
    assert notice.recipients == [LEAD]  # told at the configured address, nobody else


def test_check_config_warns_of_a_routed_group_nobody_answers(sqlite_url: str,
                                                            tmp_path: Path) -> None:
    config = configure(tmp_path, sqlite_url)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKETD_")}
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "--config", str(config), "check-config"],
        capture_output=True, text=True, timeout=120,
        env={**clean, "TICKETD_SECURITY__SECRET": SECRET})
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    # Anna is in payments; the other routed groups and the default group reach nobody.
    assert any('"responsible_gaming" (for self_exclusion)' in w for w in warnings), warnings
    assert any('"support" (for any other category)' in w for w in warnings), warnings
    assert not any('"payments"' in w for w in warnings), warnings
    with_addresses = config.read_text().replace(
        "[[team.agents]]", '[team]\ngroup_addresses = { responsible_gaming = "rg@casino.test", '
        'support = "desk@casino.test", team_leads = "leads@casino.test", '
        'data_protection = "dpo@casino.test" }\n\n[[team.agents]]')
    config.write_text(with_addresses)
    again = subprocess.run(
        [sys.executable, "-m", "daemon", "--config", str(config), "check-config"],
        capture_output=True, text=True, timeout=120,
        env={**clean, "TICKETD_SECURITY__SECRET": SECRET})
    assert again.returncode == 0, again.stderr
    assert "warning" not in again.stderr
