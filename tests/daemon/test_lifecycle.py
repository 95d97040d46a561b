"""The ticket lifecycle rules, as values: no database, no mail."""

from __future__ import annotations

from datetime import UTC, datetime

from daemon.lifecycle import (
    TicketState,
    after_public_reply,
    apply_command,
    is_final_answer,
    merged_into,
)

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
OPEN = TicketState(status="open", assignee="anna@casino.test", category="refund")


def test_assign_me_is_whoever_wrote_it_and_the_event_keeps_who_held_it() -> None:
    change = apply_command(OPEN, "assign", "me", "lead@casino.test", NOW)
    assert change is not None
    assert change.state.assignee == "lead@casino.test"
    assert change.detail == {"before": "anna@casino.test"}
    other = apply_command(OPEN, "assign", "boris@casino.test", "lead@casino.test", NOW)
    assert other is not None and other.state.assignee == "boris@casino.test"


def test_resolving_stamps_the_time_and_reopening_clears_it() -> None:
    resolved = apply_command(OPEN, "status", "resolved", "anna@casino.test", NOW)
    assert resolved is not None
    assert (resolved.state.status, resolved.state.resolved_at) == ("resolved", NOW)
    reopened = apply_command(resolved.state, "status", "open", "anna@casino.test", NOW)
    assert reopened is not None
    assert (reopened.state.status, reopened.state.resolved_at) == ("open", None)
    assert reopened.detail == {"before": "resolved"}


def test_escalate_marks_an_appeal_and_note_changes_nothing() -> None:
    escalated = apply_command(OPEN, "escalate", None, "anna@casino.test", NOW)
    assert escalated is not None and escalated.state.appeal_requested_at == NOW
    assert apply_command(OPEN, "note", None, "anna@casino.test", NOW) is None


def test_a_reply_waits_on_the_player_unless_it_set_a_status() -> None:
    assert after_public_reply(OPEN, ()).status == "pending"
    assert after_public_reply(OPEN, ("assign",)).status == "pending"
    assert after_public_reply(OPEN, ("status",)) == OPEN
    assert merged_into(OPEN).status == "closed"


def test_only_resolved_or_closed_is_a_final_answer() -> None:
    assert is_final_answer((("status", "resolved"),))
    assert is_final_answer((("assign", "me"), ("status", "closed")))
    assert not is_final_answer((("status", "pending"),))
    assert not is_final_answer(())
