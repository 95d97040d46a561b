"""Threading lookup cost with 10,000 vs 1,000,000 stored messages (the cost must stay flat).

Rows are generated inside the database (recursive CTE on SQLite, generate_series on
PostgreSQL); then 2,000 lookups of the one threading query (`storage.queries.ticket_facts`)
with References naming a random stored message each, and the query plan.
Usage: python bench/threading.py [--sizes 10000 1000000] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from storage import db, queries  # noqa: E402

PG_DEFAULT = os.environ.get("TICKETD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PER_TICKET = 4  # messages per ticket

FILL_SQLITE = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :tickets)
INSERT INTO tickets (id, number, subject, status, category, priority, language, requester_id,
                     created_at, updated_at)
SELECT i, i + 10000, 'bench', 'open', 'other', 'normal', 'en', 1, '2026-01-01', '2026-01-01' FROM n;
"""
FILL_SQLITE_MESSAGES = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :messages)
INSERT INTO messages (ticket_id, direction, kind, sender, sender_name, subject, header_message_id,
                      raw_size, visible_text, full_text, created_at)
SELECT (i - 1) / :per + 1, 'in', 'complaint', 'p@bench.test', '', 'bench',
       'm' || i || '@bench.test', 0, '', '', '2026-01-01' FROM n;
"""
FILL_PG = """
INSERT INTO tickets (id, number, subject, status, category, priority, language, requester_id,
                     created_at, updated_at)
SELECT i, i + 10000, 'bench', 'open', 'other', 'normal', 'en', 1, '2026-01-01', '2026-01-01'
FROM generate_series(1, :tickets) AS i;
"""
FILL_PG_MESSAGES = """
INSERT INTO messages (ticket_id, direction, kind, sender, sender_name, subject, header_message_id,
                      raw_size, visible_text, full_text, created_at)
SELECT (i - 1) / :per + 1, 'in', 'complaint', 'p@bench.test', '', 'bench',
       'm' || i || '@bench.test', 0, '', '', '2026-01-01'
FROM generate_series(1, :messages) AS i;
"""


def database(backend: str, pg_url: str, work: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{work / f'threads-{uuid.uuid4().hex[:6]}.db'}", None
    name = f"ticketd_thr_{uuid.uuid4().hex[:8]}"
    with create_engine(pg_url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(pg_url).set(database=name).render_as_string(hide_password=False), name


def fill(engine, backend: str, messages: int) -> float:  # noqa: ANN001
    tickets = messages // PER_TICKET
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO contacts (id, address, name, bouncing, created_at) "
                          "VALUES (1, 'p@bench.test', '', false, '2026-01-01')"))
        first, second = (FILL_SQLITE, FILL_SQLITE_MESSAGES) if backend == "sqlite" else (FILL_PG, FILL_PG_MESSAGES)
        conn.execute(text(first), {"tickets": tickets})
        conn.execute(text(second), {"messages": messages, "per": PER_TICKET})
        if backend == "postgresql":
            conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


def lookups(engine, messages: int, count: int = 2000) -> tuple[float, float]:  # noqa: ANN001
    rng = random.Random(3)
    sessions = db.session_factory(engine)
    times = []
    with sessions() as session:
        for _ in range(count):
            ids = [f"unknown-{rng.random()}@elsewhere.test", f"m{rng.randint(1, messages)}@bench.test"]
            t0 = time.perf_counter()
            found = queries.ticket_facts(session, "p@bench.test", message_ids=ids)
            times.append(time.perf_counter() - t0)
            assert found, ids
    times.sort()
    return times[len(times) // 2] * 1e3, times[int(len(times) * 0.99)] * 1e3


def plan(engine, backend: str) -> str:  # noqa: ANN001
    sql = ("SELECT ticket_id FROM messages WHERE header_message_id IN ('m1@bench.test', 'x') "
           "ORDER BY id DESC LIMIT 1")
    with engine.connect() as conn:
        if backend == "sqlite":
            rows = conn.execute(text("EXPLAIN QUERY PLAN " + sql)).all()
            return "; ".join(str(r[-1]) for r in rows)
        rows = conn.execute(text("EXPLAIN " + sql)).all()
        return " / ".join(r[0].strip() for r in rows if "Index" in r[0] or "Scan" in r[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--pg-url", default=PG_DEFAULT)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ticketd-threads-"))
    print(f"{'backend':<11} {'messages':>9} {'fill s':>7} {'lookup median ms':>17} {'p99 ms':>7}  plan")
    for backend in ("sqlite", "postgresql"):
        for size in args.sizes:
            url, pg_name = database(backend, args.pg_url, work)
            engine = db.make_engine(url)
            db.upgrade(engine)
            filled = fill(engine, backend, size)
            median, p99 = lookups(engine, size)
            print(f"{backend:<11} {size:>9} {filled:>7.1f} {median:>17.3f} {p99:>7.3f}  {plan(engine, backend)}")
            engine.dispose()
            if pg_name:
                with create_engine(args.pg_url, isolation_level="AUTOCOMMIT").connect() as conn:
                    conn.execute(text(f'DROP DATABASE "{pg_name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
