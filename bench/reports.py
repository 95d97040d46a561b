"""`ticketd report` over a large event log: N complaints spread over a year, each with its
created, complaint_opened, acknowledgement and public reply events and, for half of them, a
final decision; one month is reported.

Rows are made inside PostgreSQL (generate_series), then ANALYZEd; on SQLite with plain
inserts. Prints, per backend and size, the seconds to build the month's report and the
peak of Python memory while building it (tracemalloc), so that a growing desk shows whether
memory follows the month or the whole log. Asserts nothing about timings.
Usage: python bench/reports.py [--tickets 20000 100000] [--backend postgresql sqlite]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Connection, text  # noqa: E402

from bench.deliver import PG_DEFAULT, database  # noqa: E402
from storage import db  # noqa: E402
from storage.reports import Period, build_report  # noqa: E402

YEAR_START = "2026-01-01 00:00:00"
MONTH = Period(date(2026, 6, 1), date(2026, 6, 30))

_TICKETS = """
INSERT INTO tickets (id, number, subject, status, category, priority, language, requester_id,
                     created_at, updated_at)
SELECT g, 10000 + g, 'Withdrawal missing', 'open',
       CASE g % 4 WHEN 0 THEN 'withdrawal' WHEN 1 THEN 'bonus' WHEN 2 THEN 'account'
                  ELSE 'other' END,
       'normal', 'en', :contact, :start, :start
FROM generate_series(1, :count) AS g
"""
# Ticket g is received (:count spread over 365 days) at start + g * 365d / count.
_EVENTS = """
INSERT INTO events (ticket_id, kind, actor, data, created_at)
SELECT g, e.kind, 'system', CAST(e.data AS json), at + e.after
FROM (SELECT g, CAST(:start || '+00' AS timestamptz) + g * interval '365 days' / :count AS at
      FROM generate_series(1, :count) AS g) AS t,
     LATERAL (VALUES
       ('created', '{}', interval '0'),
       ('complaint_opened', '{"profile": "ukgc", "category": "withdrawal"}', interval '0'),
       ('mail_queued', '{"kind": "ack"}', interval '2 minutes'),
       ('public_reply', '{}', (g % 48) * interval '1 hour'),
       ('final_decision', '{"in_time": true}', (g % 30) * interval '1 day')
     ) AS e(kind, data, after)
WHERE e.kind <> 'final_decision' OR g % 2 = 0
"""


def fill(url: str, count: int) -> float:
    engine = db.make_engine(url)
    db.upgrade(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        contact = conn.execute(text(
            "INSERT INTO contacts (address, name, bouncing, created_at) "
            "VALUES ('player@bench.test', '', false, :start) RETURNING id"),
            {"start": YEAR_START}).scalar()
        args = {"contact": contact, "start": YEAR_START, "count": count}
        if engine.dialect.name == "postgresql":
            conn.execute(text(_TICKETS), args)
            conn.execute(text(_EVENTS), args)
        else:
            _fill_sqlite(conn, args)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def _fill_sqlite(conn: Connection, args: dict[str, object]) -> None:
    # No generate_series in SQLite: recursive CTEs give the numbers.
    conn.execute(text(_sqlite_tickets()), args)
    conn.execute(text(_sqlite_events()), args)


def _sqlite_tickets() -> str:
    return """
INSERT INTO tickets (id, number, subject, status, category, priority, language, requester_id,
                     created_at, updated_at)
WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :count)
SELECT g, 10000 + g, 'Withdrawal missing', 'open',
       CASE g % 4 WHEN 0 THEN 'withdrawal' WHEN 1 THEN 'bonus' WHEN 2 THEN 'account'
                  ELSE 'other' END,
       'normal', 'en', :contact, :start, :start
FROM s
"""


def _sqlite_events() -> str:
    # Times as the UTCDateTime column stores them on SQLite: naive UTC text.
    return """
INSERT INTO events (ticket_id, kind, actor, data, created_at)
WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :count),
     t(g, at) AS (SELECT g, unixepoch(:start) + g * 365 * 86400 / :count FROM s),
     e(kind, data, after, every) AS (VALUES
       ('created', '{}', 0, 1),
       ('complaint_opened', '{"profile": "ukgc", "category": "withdrawal"}', 0, 1),
       ('mail_queued', '{"kind": "ack"}', 120, 1),
       ('public_reply', '{}', -1, 1),
       ('final_decision', '{"in_time": true}', -2, 2))
SELECT g, kind, 'system', data,
       strftime('%Y-%m-%d %H:%M:%f', at + CASE after WHEN -1 THEN (g % 48) * 3600
                                                    WHEN -2 THEN (g % 30) * 86400
                                                    ELSE after END, 'unixepoch')
FROM t, e WHERE g % every = 0
"""


def measure(url: str) -> tuple[float, int, int]:
    """(seconds, peak bytes of Python memory, complaints counted) for the month. Timed and
    traced in two runs: tracemalloc slows Python several times over."""
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    started = time.perf_counter()
    with sessions() as session:
        report = build_report(session, MONTH)
    seconds = time.perf_counter() - started
    tracemalloc.start()
    with sessions() as session:
        build_report(session, MONTH)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    engine.dispose()
    return seconds, peak, report.total.complaints


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--backend", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    args = parser.parse_args()
    print(f"{'backend':<11} {'tickets':>8} {'events':>8} {'fill s':>7} {'month s':>8} "
          f"{'peak MiB':>9} {'counted':>8}")
    for backend in args.backend:
        for count in args.tickets:
            with database(backend, args.pg_url) as url:
                filled = fill(url, count)
                seconds, peak, counted = measure(url)
            events = count * 4 + count // 2
            print(f"{backend:<11} {count:>8} {events:>8} {filled:>7.1f} {seconds:>8.2f} "
                  f"{peak / 2**20:>9.1f} {counted:>8}")


if __name__ == "__main__":
    main()
