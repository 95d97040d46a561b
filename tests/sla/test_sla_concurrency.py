"""Several monitors at the same moment on the same due clocks: each escalation exactly once.

On PostgreSQL the monitors really run in parallel (row locks, SKIP LOCKED, the optimistic
stage step); on SQLite the write lock takes turns. Counted in the outbox and the event log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter

from sqlalchemy import select

from daemon.sla import MonitorDesk, MonitorStats, SlaMonitor
from storage import db
from storage.models import Event, OutboxMessage
from tests.sla.conftest import CLI, DESK, HEAD, KEYS, LEAD, at

TICKETS = 200


def _tickets(new_ticket) -> list[int]:  # noqa: ANN001
    return [new_ticket(at=at(seconds=i)) for i in range(TICKETS)]


def _counts(sessions) -> tuple[Counter, Counter]:  # noqa: ANN001
    """(ticket, recipient) of escalation mails, and (ticket, clock, stage) of SLA events."""
    with sessions() as session:
        mails = Counter((t, r) for t, rcpts in session.execute(
            select(OutboxMessage.ticket_id, OutboxMessage.recipients)
            .where(OutboxMessage.kind == "escalation")) for r in rcpts)
        events = Counter((t, d["clock"], d["stage"]) for t, d in session.execute(
            select(Event.ticket_id, Event.data).where(Event.kind.like("sla_%"))))
    return mails, events


def _assert_exactly_once(tickets: list[int], sessions) -> None:  # noqa: ANN001
    mails, events = _counts(sessions)
    assert mails == Counter({(t, to): 1 for t in tickets for to in (LEAD, HEAD, DESK)})
    assert events == Counter({key: 1 for t in tickets for key in (
        (t, "first_response", "level1"), (t, "first_response", "level2"),
        (t, "resolution", "warning"))})


def test_two_monitors_in_threads_escalate_each_clock_once(new_ticket, sessions, options, identity,
                                                          db_url) -> None:
    tickets = _tickets(new_ticket)
    engines = [db.make_engine(db_url) for _ in range(2)]
    monitors = [SlaMonitor(db.session_factory(e), MonitorDesk(options, identity))
                for e in engines]
    start = threading.Barrier(len(monitors))
    results: list[MonitorStats] = []

    def run(monitor: SlaMonitor) -> None:
        start.wait()
        results.append(monitor.run_once(at(hours=60)))  # level 1 and 2, resolution warning

    threads = [threading.Thread(target=run, args=(m,)) for m in monitors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for engine in engines:
        engine.dispose()
    assert len(results) == 2 and sum(r.failed for r in results) == 0
    assert sum(len(r.escalations) for r in results) == 3 * TICKETS
    _assert_exactly_once(tickets, sessions)


def test_two_monitor_processes_escalate_each_clock_once(new_ticket, sessions, ticketd,
                                                        tmp_path) -> None:
    tickets = _tickets(new_ticket)
    ticketd("sla", "status")  # writes the config file the two processes share
    config = tmp_path / "etc" / "ticketd.toml"
    env = {"TICKETD_SECURITY__SECRET": KEYS[0].decode(), "TICKETD_LOGGING__LEVEL": "WARNING"}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TICKETD_")
              or k == "TICKETD_TEST_PG_URL"}, **env}
    children = [subprocess.Popen(
        [sys.executable, "-c", CLI, "--config", str(config), "sla", "--once", "--now",
         at(hours=60).isoformat()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env) for _ in range(2)]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    printed = [line for out, _ in outputs for line in out.splitlines() if "->" in line]
    assert len(printed) == 3 * TICKETS
    _assert_exactly_once(tickets, sessions)


def test_monitors_running_through_the_day_send_each_level_once(new_ticket, sessions, options,
                                                               identity, db_url) -> None:
    tickets = _tickets(new_ticket)
    engines = [db.make_engine(db_url) for _ in range(3)]
    monitors = [SlaMonitor(db.session_factory(e), MonitorDesk(options, identity))
                for e in engines]
    moments = [at(hours=h) for h in (19.3, 19.3, 24.1, 24.1, 28.1, 60, 60)]

    def run(monitor: SlaMonitor) -> None:
        for moment in moments:
            monitor.run_once(moment)

    threads = [threading.Thread(target=run, args=(m,)) for m in monitors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    for engine in engines:
        engine.dispose()
    mails, events = _counts(sessions)
    assert set(events.values()) == {1}  # nothing twice
    for t in tickets:  # every level once; the warning only if no monitor came after the breach
        assert {("first_response", "level1"), ("first_response", "level2"),
                ("resolution", "warning")} <= {key[1:] for key in events if key[0] == t}
    assert sum(mails.values()) == len(events) and set(mails.values()) <= {1, 2}
