"""Clocks in the database: start, stop, pause, resume, the due query and the stage step,
on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from daemon.sla import (
    clocks_for_agent_reply,
    clocks_for_follow_up,
    clocks_for_resolved,
    pause_clocks,
    resume_clocks,
    start_clock,
)
from responders.sla import DEFAULT_POLICIES, Calendar
from storage import sla
from tests.sla.conftest import T0, at

DEFAULT = DEFAULT_POLICIES["default"]


def test_a_new_ticket_gets_first_response_and_resolution_clocks(new_ticket, look) -> None:
    ticket = new_ticket()
    first, resolution = look.clock(ticket, "first_response"), look.clock(ticket, "resolution")
    assert (first.policy, first.stage, first.remaining) == ("default", 0, 24 * 3600)
    assert first.due_at == at(hours=24) and first.warn_at == at(hours=19, minutes=12)
    assert first.next_action_at == first.warn_at
    assert resolution.due_at == at(hours=72)


def test_only_one_clock_of_a_kind_runs_and_a_stopped_one_leaves_room(new_ticket, sessions):
    ticket = new_ticket()
    with sessions.begin() as session:
        assert not start_clock(session, ticket, "first_response", DEFAULT, Calendar(), T0)
        assert sla.stop_clock(session, ticket, "first_response", at(hours=1))
        assert not sla.stop_clock(session, ticket, "first_response", at(hours=2))
        assert start_clock(session, ticket, "first_response", DEFAULT, Calendar(), at(hours=3))
        kinds = sorted(c.kind for c in sla.open_clocks(session, ticket))
    assert kinds == ["first_response", "resolution"]


def test_a_stopped_clock_is_never_due(new_ticket, sessions, look) -> None:
    ticket = new_ticket()
    with sessions.begin() as session:
        clocks_for_agent_reply(session, ticket, at(hours=2))
    with sessions() as session:
        due = sla.due_clocks(session, at(days=30), 100)
    assert [c.kind for c in due] == ["resolution"]
    stopped = look.clock(ticket, "first_response")
    assert stopped.stopped_at == at(hours=2) and stopped.next_action_at is None
    assert stopped.breached_at is None


def test_stopping_after_the_due_time_records_the_breach(new_ticket, sessions, look) -> None:
    ticket = new_ticket()
    with sessions.begin() as session:
        clocks_for_resolved(session, ticket, at(hours=30))
    assert look.clock(ticket, "first_response").breached_at == at(hours=24)
    assert look.clock(ticket, "resolution").breached_at is None


def test_due_clocks_are_oldest_first_and_limited(new_ticket, sessions) -> None:
    tickets = [new_ticket(at=at(minutes=m)) for m in (30, 10, 20)]
    with sessions() as session:
        due = sla.due_clocks(session, at(hours=20), 2)
    assert [c.ticket_id for c in due] == [tickets[1], tickets[2]]
    assert all(c.kind == "first_response" and c.stage == 0 for c in due)


def test_advance_moves_a_stage_once(new_ticket, sessions, look) -> None:
    ticket = new_ticket()
    clock = look.clock(ticket, "first_response")
    with sessions.begin() as session:
        assert sla.advance(session, clock.id, 0, 1, clock.due_at)
    with sessions.begin() as session:
        assert not sla.advance(session, clock.id, 0, 1, clock.due_at)  # lost: writes nothing
        assert sla.advance(session, clock.id, 1, 2, at(hours=28))
    after = look.clock(ticket, "first_response")
    assert (after.stage, after.next_action_at, after.breached_at) == (2, at(hours=28),
                                                                      at(hours=24))


def test_a_pause_keeps_the_working_time_left_and_a_resume_spends_it(new_ticket, sessions,
                                                                     look) -> None:
    ticket = new_ticket()
    with sessions.begin() as session:
        assert pause_clocks(session, ticket, at(hours=10), Calendar()) == 2
        assert pause_clocks(session, ticket, at(hours=11), Calendar()) == 0
    paused = look.clock(ticket, "first_response")
    assert (paused.remaining, paused.due_at, paused.next_action_at) == (14 * 3600, None, None)
    with sessions() as session:
        assert sla.due_clocks(session, at(days=30), 100) == []
    with sessions.begin() as session:
        assert resume_clocks(session, ticket, at(hours=50), Calendar()) == 2
    resumed = look.clock(ticket, "first_response")
    assert resumed.paused_at is None and resumed.due_at == at(hours=64)
    assert resumed.warn_at == at(hours=59, minutes=12)  # still 4h48m before the due time
    assert resumed.next_action_at == resumed.warn_at


def test_a_follow_up_after_an_answer_starts_a_next_response_clock(new_ticket, sessions,
                                                                 options, look) -> None:
    ticket = new_ticket()
    with sessions.begin() as session:
        clocks_for_follow_up(session, ticket, at(hours=1), options)  # first still owed
        assert {c.kind for c in sla.open_clocks(session, ticket)} == {"first_response",
                                                                       "resolution"}
        clocks_for_agent_reply(session, ticket, at(hours=2))
        clocks_for_follow_up(session, ticket, at(hours=3), options)
    assert look.clock(ticket, "next_response").due_at == at(hours=27)


def test_an_appeal_ticket_runs_on_the_appeal_policy(new_ticket, look) -> None:
    ticket = new_ticket(category="appeal")
    clock = look.clock(ticket, "first_response")
    assert clock.policy == "appeal" and clock.due_at - T0 == timedelta(hours=48)


def test_the_due_query_is_one_scan_of_the_partial_index(new_ticket, sessions, db_url) -> None:
    for _ in range(3):
        new_ticket()
    with sessions() as session:
        if not db_url.startswith("sqlite"):
            # Six rows: the planner would read them all. Off with the alternatives, so the
            # plan shows whether the partial index serves the query's filter and order.
            for method in ("seqscan", "bitmapscan", "sort"):
                session.execute(text(f"SET enable_{method} = off"))
        plan = " ".join(sla.explain_due(session, at(days=400), 10))
    assert "ix_sla_clocks_next_action_at" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
