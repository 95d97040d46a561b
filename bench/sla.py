"""The SLA monitor over a large desk: a million open tickets, each with a first-response and a
resolution clock, 1 % of them due for their warning, on PostgreSQL.

Rows are made inside the database (generate_series), then ANALYZEd. Prints the due query's
plan, the query alone (one batch, and every due clock at once), and one whole monitor pass
(step, compose, queue and event, one transaction per batch of due clocks; with
--per-clock, then the same clocks one transaction each, as before batches), with the
templates read once as the daemon reads them, and the process's peak RSS. Nothing leaves
the machine: escalation mails only go to the outbox. "our CPU" is this process's CPU time
(the database server's is not in it), steadier than the clock on a busy machine. Asserts
nothing about timings.
Usage: python bench/sla.py [--tickets 1000000] [--due 0.01] [--batch 200] [--per-clock]
                          [--pg-url URL]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, text  # noqa: E402

from bench.deliver import PG_DEFAULT, database  # noqa: E402
from daemon.sla import MonitorDesk, MonitorStats, SlaMonitor, SlaOptions  # noqa: E402
from responders.identity import Identity  # noqa: E402
from responders.rendering import Templates  # noqa: E402
from storage import db, sla  # noqa: E402

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

# Every 1/share-th ticket started 19h12m-20h12m ago: its 24-hour first response is past the
# 80 % warning and not yet breached. The others started up to 19 hours ago: nothing is due.
_TICKETS = """
INSERT INTO tickets (number, subject, status, category, priority, language, requester_id,
                     created_at, updated_at)
SELECT 10000 + g, 'Withdrawal missing', 'open', 'refund', 'normal', 'en', :contact,
       :now - CASE WHEN g % :every = 0
                   THEN interval '19 hours 12 minutes' + random() * interval '1 hour'
                   ELSE random() * interval '19 hours' END,
       :now
FROM generate_series(1, :count) AS g
"""
_CLOCKS = """
INSERT INTO sla_clocks (ticket_id, kind, policy, started_at, due_at, warn_at, remaining, stage,
                        next_action_at)
SELECT id, kind, 'default', created_at, created_at + promise, created_at + promise * 0.8,
       extract(epoch FROM promise)::int, 0, created_at + promise * 0.8
FROM tickets, (VALUES ('first_response', interval '24 hours'),
                      ('resolution', interval '72 hours')) AS k(kind, promise)
"""
_QUESTION = """
INSERT INTO messages (ticket_id, direction, kind, sender, sender_name, subject, raw_size,
                      visible_text, full_text, created_at)
SELECT id, 'in', 'complaint', 'player@bench.test', '', subject, 0,
       'Hello, my withdrawal of 500 EUR has not arrived. Please check.', '', created_at
FROM tickets WHERE id % :every = 0
"""


def fill(engine: Engine, count: int, every: int) -> tuple[int, int, float]:
    """(tickets, clocks, seconds) after making the rows and ANALYZE."""
    started = time.perf_counter()
    now = NOW.replace(tzinfo=None)
    with engine.begin() as conn:
        contact = conn.execute(text(
            "INSERT INTO contacts (address, name, bouncing, created_at) "
            "VALUES ('player@bench.test', '', false, :now) RETURNING id"), {"now": now}).scalar()
        args = {"contact": contact, "now": now, "every": every, "count": count}
        conn.execute(text(_TICKETS), args)
        conn.execute(text(_CLOCKS))
        conn.execute(text(_QUESTION), {"every": every})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
        tickets = conn.execute(text("SELECT count(*) FROM tickets")).scalar_one()
        clocks = conn.execute(text("SELECT count(*) FROM sla_clocks")).scalar_one()
    return tickets, clocks, time.perf_counter() - started


def timed(work: Callable[[], object], runs: int = 5) -> float:
    """Median seconds of `runs` calls."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def query_seconds(engine: Engine, limit: int) -> tuple[float, int]:
    """Median seconds of the due query (rolled back, so each run sees the same rows)."""
    sessions = db.session_factory(engine)
    found = []

    def once() -> None:
        with sessions() as session:
            found.append(len(sla.due_clocks(session, NOW, limit)))
            session.rollback()

    return timed(once), found[-1]


def plan(engine: Engine, limit: int) -> list[str]:
    with db.session_factory(engine)() as session:
        return sla.explain_due(session, NOW, limit)


def one_pass(engine: Engine, batch: int) -> tuple[float, float, MonitorStats]:
    options = SlaOptions(team_lead_address="lead@casino.test", batch=batch)
    identity = Identity("support@casino.test", "Casino Support", (b"bench-key",),
                        templates=Templates(frozen=True))  # as the daemon's runtime has them
    desk = MonitorDesk(options, identity)
    monitor = SlaMonitor(db.session_factory(engine), desk)
    started, cpu = time.perf_counter(), time.process_time()
    stats = monitor.run_once(NOW)
    return time.perf_counter() - started, time.process_time() - cpu, stats


_RESET = ("UPDATE sla_clocks SET stage = 0, next_action_at = warn_at, breached_at = NULL",
          "DELETE FROM outbox", "DELETE FROM events")


def per_clock_pass(engine: Engine, batch: int) -> tuple[float, float, MonitorStats]:
    """The same pass one transaction per clock, as before batches (and as a batch in which a
    clock fails is done again): on the same clocks, put back as they were."""
    with engine.begin() as conn:
        for statement in _RESET:
            conn.execute(text(statement))
    options = SlaOptions(team_lead_address="lead@casino.test", batch=batch)
    identity = Identity("support@casino.test", "Casino Support", (b"bench-key",),
                        templates=Templates(frozen=True))
    desk = MonitorDesk(options, identity)
    sessions = db.session_factory(engine)
    monitor = SlaMonitor(sessions, desk)
    with sessions() as session:
        due = [clock.id for clock in sla.due_clocks(session, NOW, 10**9)]
    stats = MonitorStats()
    started, cpu = time.perf_counter(), time.process_time()
    for clock_id in due:
        monitor._handle(desk, clock_id, NOW, stats)  # noqa: SLF001 - the per-clock path
    return time.perf_counter() - started, time.process_time() - cpu, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tickets", type=int, default=1_000_000)
    ap.add_argument("--due", type=float, default=0.01, help="share of tickets due")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--pg-url", default=PG_DEFAULT)
    ap.add_argument("--per-clock", action="store_true",
                    help="then the same pass one transaction per clock, for comparison")
    args = ap.parse_args()
    every = max(round(1 / args.due), 1)
    with database("postgresql", args.pg_url) as url:
        engine = db.make_engine(url)
        db.upgrade(engine)
        tickets, clocks, filled = fill(engine, args.tickets, every)
        due = tickets // every
        print(f"PostgreSQL, {tickets:,} open tickets, {clocks:,} clocks, {due:,} due "
              f"(made and analysed in {filled:.0f} s)\n")
        for limit, what in ((args.batch, "one batch"), (due, "every due clock at once")):
            print(f"due query plan, {what} (LIMIT {limit}):")
            print("\n".join(f"  {line}" for line in plan(engine, limit)), "\n")
        batch_s, batch_n = query_seconds(engine, args.batch)
        all_s, all_n = query_seconds(engine, due)
        pass_s, pass_cpu, stats = one_pass(engine, args.batch)
        print(f"{'what':<38} {'rows':>8} {'seconds':>9} {'per clock ms':>13} "
              f"{'our CPU ms':>11}")
        print(f"{f'due query, one batch (LIMIT {args.batch})':<38} {batch_n:>8,} "
              f"{batch_s:>9.4f} {batch_s / max(batch_n, 1) * 1e3:>13.4f}")
        print(f"{'due query, every due clock':<38} {all_n:>8,} {all_s:>9.4f} "
              f"{all_s / max(all_n, 1) * 1e3:>13.4f}")
        print(f"{'whole pass: step, mail, outbox, event':<38} {len(stats.escalations):>8,} "
              f"{pass_s:>9.2f} {pass_s / max(stats.due, 1) * 1e3:>13.3f} "
              f"{pass_cpu / max(stats.due, 1) * 1e3:>11.3f}")
        if args.per_clock:
            slow_s, slow_cpu, slow = per_clock_pass(engine, args.batch)
            print(f"{'whole pass, one transaction per clock':<38} {len(slow.escalations):>8,} "
                  f"{slow_s:>9.2f} {slow_s / max(slow.due, 1) * 1e3:>13.3f} "
                  f"{slow_cpu / max(slow.due, 1) * 1e3:>11.3f}")
            print(f"batched pass / per-clock pass: {pass_s / max(slow_s, 1e-9):.1%} of the "
                  f"time, {pass_cpu / max(slow_cpu, 1e-9):.1%} of this process's CPU")
        print(f"\npass: due={stats.due} warnings={stats.warnings} "
              f"breaches={stats.breaches} lost={stats.lost} failed={stats.failed}")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS {rss:.0f} MB")
        engine.dispose()


if __name__ == "__main__":
    main()
