"""`ticketd search` over many tickets: how long a search takes, and the plan that shows it is
an index search (FTS5 on SQLite, the GIN expression index on PostgreSQL), not a scan.

Tickets with one message each are generated inside the database (recursive CTE on SQLite,
generate_series on PostgreSQL), through the triggers and indexes migration 0008 made, so
the fill time is also what indexing costs (and, on PostgreSQL, a VACUUM ANALYZE). Words
are spread so that a search finds 1 ticket in 1,000 ("common") or 1 in 100,000 ("rare",
and "two words" that occur together). Then `ticketd tickets`, unfiltered and by status,
category, assignee and group (1 ticket in 20 pending, 1 in 20 of a category), and the
process's peak RSS.
Usage: python bench/search.py [--tickets 1000000] [--backends sqlite postgresql] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from storage import db, queries, search  # noqa: E402

PG_DEFAULT = os.environ.get("TICKETD_TEST_PG_URL",
                            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
# One message per ticket: "... w<i % 1000> ... r<i % 100000> ...".
_TEXT = ("'The player reports that bet ' || i || ' was settled as w' || (i % 1000) || "
         "' although the event ended v' || ((i * 7) % 5000) || ', reference r' || (i % 100000) "
         "|| '. Please check the settlement and answer soon.'")
_ROWS = {
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
              "SELECT i FROM n",
    "postgresql": "SELECT i FROM generate_series(1, :count) AS i",
}
# 1 ticket in 20 is pending, 1 in 20 resolved, the rest open; categories c0 .. c19.
_STATUS = ("CASE WHEN i % 20 = 3 THEN 'pending' WHEN i % 20 = 4 THEN 'resolved' "
           "ELSE 'open' END")
LISTINGS = {
    "none": queries.TicketFilter(),
    "--status pending": queries.TicketFilter(status="pending"),
    "--category c7": queries.TicketFilter(category="c7"),
    "--assignee agent7@bench.test": queries.TicketFilter(assignee="agent7@bench.test"),
    "--group g3 --assignee agent8@bench.test":
        queries.TicketFilter(group="g3", assignee="agent8@bench.test"),
}
QUERIES = {"common (1 in 1,000)": "w17", "rare (1 in 100,000)": "r4242",
           "two words (both in the same 1 in 100,000)": "w242 r4242"}


def database(backend: str, pg_url: str, work: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{work / f'search-{uuid.uuid4().hex[:6]}.db'}", None
    name = f"ticketd_search_{uuid.uuid4().hex[:8]}"
    with create_engine(pg_url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(pg_url).set(database=name).render_as_string(hide_password=False), name


def fill(engine, backend: str, count: int) -> float:  # noqa: ANN001
    rows = _ROWS[backend]
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO contacts (id, address, name, bouncing, created_at) "
                          "VALUES (1, 'p@bench.test', '', false, '2026-01-01')"))
        conn.execute(text(
            "INSERT INTO tickets (id, number, subject, status, category, priority, language, "
            'requester_id, assignee, "group", created_at, updated_at) SELECT i, i + 10000, '
            f"'Bet ' || i, {_STATUS}, 'c' || (i % 20), 'normal', 'en', 1, 'agent' || (i % 50) || "
            "'@bench.test', 'g' || (i % 5), '2026-01-01', '2026-01-01' "
            f"FROM ({rows}) AS s"),
            {"count": count})
        conn.execute(text(
            "INSERT INTO messages (ticket_id, direction, kind, sender, sender_name, subject, "
            "raw_size, visible_text, full_text, created_at) SELECT i, 'in', 'complaint', "
            f"'p@bench.test', '', 'Bet ' || i, 0, {_TEXT}, '', '2026-01-01' FROM ({rows}) AS s"),
            {"count": count})
    if backend == "postgresql":
        # As autovacuum would soon after: merges the GIN pending list of the bulk insert
        # into the index (until then every search also reads that list) and gathers stats.
        with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - started


def measure(sessions, query: str, repeat: int) -> tuple[float, float, int]:  # noqa: ANN001
    times, found = [], 0
    for _ in range(repeat):
        with sessions() as session:
            started = time.perf_counter()
            found = len(search.search(session, query, limit=20))
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1], found


def measure_list(sessions, wanted: queries.TicketFilter,  # noqa: ANN001
                 repeat: int) -> tuple[float, int]:
    times, total = [], 0
    for _ in range(repeat):
        with sessions() as session:
            started = time.perf_counter()
            total = queries.find_tickets(session, wanted, 50)[1]
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), total


def plan(engine, backend: str, query: str) -> list[str]:  # noqa: ANN001
    with engine.connect() as conn:
        return (search.explain_pg(conn, query) if backend == "postgresql"
                else search.explain_sqlite(conn, query))


def run(backend: str, count: int, pg_url: str, work: Path, repeat: int) -> None:
    url, pg_name = database(backend, pg_url, work)
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        seconds = fill(engine, backend, count)
        print(f"\n{backend}: {count:,} tickets and messages written and indexed in {seconds:.0f} s")
        print("| query | median ms | p99 ms | tickets shown |\n|---|---|---|---|")
        sessions = db.session_factory(engine)
        for name, query in QUERIES.items():
            median, p99, found = measure(sessions, query, repeat)
            print(f"| {name}: `{query}` | {median:.1f} | {p99:.1f} | {found} |")
        print("\n`ticketd tickets` (50 shown, and the matches counted up to 1,000 more):")
        print("| filter | median ms | tickets matching |\n|---|---|---|")
        for name, wanted in LISTINGS.items():
            median, total = measure_list(sessions, wanted, repeat)
            print(f"| {name} | {median:.1f} | {total:,} |")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS {rss:.0f} MB")
        print("plan of the message search:")
        for line in plan(engine, backend, "w17"):
            print("   ", line)
    finally:
        engine.dispose()
        if pg_name:
            with create_engine(pg_url, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        for backend in args.backends:
            run(backend, args.tickets, args.pg_url, Path(work), args.repeat)


if __name__ == "__main__":
    main()
