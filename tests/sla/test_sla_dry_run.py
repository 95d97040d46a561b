"""`ticketd sla --once --now <a time ahead>` shows what would be sent and changes nothing;
`--apply` makes it real. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from storage.models import Event, OutboxMessage, SlaClock
from tests.sla.conftest import HEAD, LEAD


def _state(sessions) -> tuple:  # noqa: ANN001
    """Everything a pass could change: clocks, events, outbox."""
    with sessions() as session:
        clocks = session.execute(select(SlaClock.id, SlaClock.stage, SlaClock.next_action_at,
                                        SlaClock.breached_at).order_by(SlaClock.id)).all()
        events = session.scalar(select(func.count()).select_from(Event))
        mails = session.scalar(select(func.count()).select_from(OutboxMessage))
    return clocks, events, mails


def test_a_pass_ahead_of_the_clock_is_a_dry_run_unless_applied(
        new_ticket, sessions, ticketd, look) -> None:  # noqa: ANN001
    now = datetime.now(UTC).replace(microsecond=0)
    tickets = [new_ticket(at=now), new_ticket(at=now)]
    numbers = [t + 10000 for t in tickets]
    ahead = (now + timedelta(days=2)).isoformat()
    before = _state(sessions)

    dry = ticketd("sla", "--once", "--now", ahead)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    for number in numbers:  # level 1 and level 2 of the first response, both due by then
        assert f"would send: #{number} first_response level1 -> {LEAD}" in lines
        assert f"would send: #{number} first_response level2 -> {HEAD}" in lines
    assert lines[-2] == "due=2 warnings=0 breaches=4 lost=0 failed=0"
    assert lines[-1].startswith(f"dry run: --now {ahead} is ahead of the clock; nothing was "
                                "recorded or queued (add --apply to do it)")
    assert _state(sessions) == before
    assert look.mails() == []

    again = ticketd("sla", "--once", "--now", ahead)  # the same answer: nothing was marked
    assert again.stdout == dry.stdout

    applied = ticketd("sla", "--once", "--now", ahead, "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "dry run" not in applied.stdout and "would send" not in applied.stdout
    assert f"#{numbers[0]} first_response level1 -> {LEAD}" in applied.stdout.splitlines()
    assert look.recipients(tickets[0])[:2] == [LEAD, HEAD]
    assert _state(sessions) != before


def test_a_pass_at_a_time_already_past_is_applied_as_before(
        new_ticket, ticketd, look) -> None:  # noqa: ANN001
    past = datetime.now(UTC) - timedelta(days=1)
    ticket = new_ticket(at=past - timedelta(days=2))
    done = ticketd("sla", "--once", "--now", past.isoformat())
    assert done.returncode == 0, done.stderr
    assert "dry run" not in done.stdout
    assert look.recipients(ticket) == [LEAD, HEAD]


def test_apply_without_now_is_a_usage_error(ticketd) -> None:  # noqa: ANN001
    result = ticketd("sla", "--once", "--apply")
    assert result.returncode == 2 and "--apply goes with --now" in result.stderr
