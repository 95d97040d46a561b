"""The monitor moves time forward: a warning at 80 %, level 1 at the breach, level 2 later, each
once, on SQLite and on PostgreSQL; through `ticketd sla --once --now` as an operator runs it."""

from __future__ import annotations

import json

from sqlalchemy import update

from daemon.sla import MonitorDesk, SlaMonitor, SlaOptions, pause_clocks, resume_clocks
from responders.identity import Identity
from responders.sla import Calendar
from storage import db, sla
from storage.models import SlaClock
from tests.sla.conftest import DESK, HEAD, KEYS, LEAD, T0, at


def test_warning_level1_and_level2_each_once_at_their_time(new_ticket, monitor, look) -> None:
    ticket = new_ticket()
    assert monitor.run_once(at(hours=19)).escalations == []
    assert look.mails() == []

    stats = monitor.run_once(at(hours=19, minutes=13))
    assert (stats.warnings, stats.breaches) == (1, 0)
    assert look.recipients(ticket) == [DESK]

    monitor.run_once(at(hours=24, minutes=1))
    assert look.recipients(ticket) == [DESK, LEAD]
    monitor.run_once(at(hours=28, minutes=1))
    assert look.recipients(ticket) == [DESK, LEAD, HEAD]

    for _ in range(3):  # nothing is left to send for the first response, however often
        assert monitor.run_once(at(hours=28, minutes=2)).escalations == []
    assert [(kind, data["stage"], data.get("level")) for kind, data in look.events(ticket)] == [
        ("sla_warning", "warning", None), ("sla_breach", "level1", 1),
        ("sla_breach", "level2", 2)]
    assert look.clock(ticket, "first_response").breached_at == at(hours=24)


def test_a_monitor_that_was_down_sends_the_breach_levels_but_no_late_warning(
        new_ticket, monitor, look) -> None:
    ticket = new_ticket()
    stats = monitor.run_once(at(hours=30))
    assert [(e.clock_kind, e.stage_name) for e in stats.escalations] == [
        ("first_response", "level1"), ("first_response", "level2")]
    assert look.recipients(ticket) == [LEAD, HEAD]


def test_a_restarted_monitor_does_not_repeat_anything(new_ticket, monitor, look, db_url,
                                                      options, identity) -> None:
    ticket = new_ticket()
    monitor.run_once(at(hours=24, minutes=1))
    engine = db.make_engine(db_url)  # a new process, as far as the database can tell
    again = SlaMonitor(db.session_factory(engine), MonitorDesk(options, identity))
    assert again.run_once(at(hours=24, minutes=1)).escalations == []
    engine.dispose()
    assert look.recipients(ticket) == [LEAD]


def test_a_clock_stopped_by_an_answer_never_escalates(new_ticket, sessions, monitor,
                                                      look) -> None:
    ticket = new_ticket()
    with sessions.begin() as session:
        sla.stop_clock(session, ticket, "first_response", at(hours=3))
    for hours in (19.5, 24.5, 29, 200):
        monitor.run_once(at(hours=hours))
    assert all(data["clock"] == "resolution" for _, data in look.events(ticket))


def test_self_exclusion_breaches_after_one_hour(new_ticket, monitor, look) -> None:
    ticket = new_ticket(category="self_exclusion")
    assert look.clock(ticket, "first_response").policy == "urgent"
    assert [e.stage_name for e in monitor.run_once(at(minutes=49)).escalations] == ["warning"]
    assert [e.stage_name for e in monitor.run_once(at(minutes=61)).escalations] == ["level1"]
    assert look.recipients(ticket) == [DESK, LEAD]


def test_a_paused_clock_waits_and_resumes_with_the_time_it_had_left(new_ticket, sessions,
                                                                    monitor, look) -> None:
    ticket = new_ticket()
    with sessions.begin() as session:  # an agent set the ticket pending after 10 hours
        pause_clocks(session, ticket, at(hours=10), Calendar())
    assert monitor.run_once(at(hours=100)).escalations == []
    with sessions.begin() as session:  # the player answered at +100h: 14 hours are left
        resume_clocks(session, ticket, at(hours=100), Calendar())
    assert monitor.run_once(at(hours=109)).escalations == []  # warning at +109h12m
    warned = monitor.run_once(at(hours=109, minutes=13)).escalations
    assert [(e.clock_kind, e.stage_name) for e in warned] == [("first_response", "warning")]
    assert [e.stage_name for e in monitor.run_once(at(hours=114, minutes=1)).escalations] == [
        "level1"]


def test_no_address_configured_still_records_the_breach_once(new_ticket, sessions,
                                                             look) -> None:
    ticket = new_ticket()
    silent = SlaMonitor(sessions, MonitorDesk(SlaOptions(), Identity("support@casino.test", "S",
                                                                    KEYS)))
    stats = silent.run_once(at(hours=25))
    assert stats.breaches == 1 and stats.escalations[0].withheld
    assert silent.run_once(at(hours=25)).escalations == []
    assert look.mails() == []
    [(kind, data)] = look.events(ticket)
    assert kind == "sla_breach" and "no escalation address" in data["withheld"]


def test_cli_once_at_a_given_time_prints_each_escalation_once(new_ticket, ticketd,
                                                             look) -> None:
    ticket = new_ticket()
    number = ticket + 10000

    early = ticketd("sla", "--once", "--now", at(hours=19).isoformat())
    assert early.returncode == 0, early.stderr
    assert early.stdout.splitlines() == ["due=0 warnings=0 breaches=0 lost=0 failed=0"]

    warn = ticketd("sla", "--once", "--now", "2026-11-21T04:13:00Z")
    assert warn.returncode == 0, warn.stderr
    assert warn.stdout.splitlines()[0] == f"#{number} first_response warning -> {DESK}"

    for _ in range(2):  # the same moment twice: the second run finds nothing to do
        breach = ticketd("sla", "--once", "--now", at(hours=24, minutes=1).isoformat())
        assert breach.returncode == 0, breach.stderr
    assert "breaches=0" in breach.stdout
    level2 = ticketd("sla", "--once", "--now", at(hours=28, minutes=1).isoformat())
    assert level2.stdout.splitlines()[0] == f"#{number} first_response level2 -> {HEAD}"
    assert look.recipients(ticket) == [DESK, LEAD, HEAD]


def test_cli_level2_after_comes_from_the_settings(new_ticket, ticketd, look) -> None:
    ticket = new_ticket()
    ticketd("sla", "--once", "--now", at(hours=24, minutes=1).isoformat(),
            sla={"level2_after": "1h"})
    done = ticketd("sla", "--once", "--now", at(hours=25, minutes=1).isoformat(),
                   sla={"level2_after": "1h"})
    assert done.returncode == 0, done.stderr
    assert look.recipients(ticket) == [LEAD, HEAD]


def test_cli_status_lists_running_and_paused_clocks(new_ticket, sessions, ticketd) -> None:
    ticket = new_ticket()
    with sessions.begin() as session:
        pause_clocks(session, new_ticket(), at(hours=1), Calendar())
    result = ticketd("sla", "status", "--json")
    assert result.returncode == 0, result.stderr
    docs = json.loads(result.stdout)
    assert [(d["ticket"], d["kind"], d["stage"]) for d in docs[:2]] == [
        (ticket + 10000, "first_response", "running"), (ticket + 10000, "resolution", "running")]
    paused = [d for d in docs if d["paused_at"]]
    assert [(d["kind"], d["remaining"], d["due_at"]) for d in paused] == [
        ("first_response", "23h00m", None), ("resolution", "71h00m", None)]
    text = ticketd("sla", "status")
    assert f"#{ticket + 10000}" in text.stdout and "paused, 23h00m left" in text.stdout


def test_cli_now_without_once_is_a_usage_error(ticketd) -> None:
    result = ticketd("sla", "--now", T0.isoformat())
    assert result.returncode == 2 and "--now goes with --once" in result.stderr


def test_a_clock_that_fails_fails_alone_and_the_rest_of_its_batch_escalates(
        new_ticket, sessions, monitor, look) -> None:
    tickets = [new_ticket() for _ in range(3)]
    with sessions.begin() as session:  # a damaged row: due, but with no due time to plan by
        session.execute(update(SlaClock).where(
            SlaClock.ticket_id == tickets[1], SlaClock.kind == "first_response")
            .values(due_at=None))
    stats = monitor.run_once(at(hours=19, minutes=13))
    assert (stats.warnings, stats.failed) == (2, 1)
    assert [look.recipients(t) for t in tickets] == [[DESK], [], [DESK]]
    assert look.clock(tickets[1], "first_response").stage == 0  # nothing of it was written
    assert monitor.run_once(at(hours=19, minutes=14)).warnings == 0  # the others stay done
