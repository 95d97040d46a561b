"""The event chain: what writing an event costs with the chain's indexes, how fast a sealing
pass chains a backlog, and how fast `events verify` walks it, on SQLite and PostgreSQL.

Events are written as ingest writes them (many per transaction), then sealed in batches of
storage.audit.SEAL_BATCH, then verified. Asserts nothing about timings.
Usage: python bench/audit.py [--events 50000] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from bench.deliver import PG_DEFAULT, database  # noqa: E402
from storage import audit, db, queries  # noqa: E402


def measure(url: str, events: int, bare: bool = False) -> tuple[float, float, float]:
    """(events written, sealed, verified) per second; `bare`: written without the chain's
    two indexes, as before the chain existed (then nothing is sealed or verified)."""
    engine = db.make_engine(url)
    db.upgrade(engine)
    if bare:
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX uq_events_chain_seq"))
            conn.execute(text("DROP INDEX ix_events_unsealed"))
    sessions = db.session_factory(engine)
    started = time.perf_counter()
    for start in range(0, events, 500):
        with sessions.begin() as session:
            for n in range(start, min(start + 500, events)):
                queries.insert_event(session, "created", None, actor="p@mail.test",
                                     ingest_key=f"{n:064x}")
    written = time.perf_counter() - started
    if bare:
        engine.dispose()
        return events / written, 0.0, 0.0
    started = time.perf_counter()
    assert audit.seal(sessions) == events
    sealed = time.perf_counter() - started
    started = time.perf_counter()
    with sessions() as session:
        verdict = audit.verify(session)
    verified = time.perf_counter() - started
    assert verdict.broken is None and verdict.checked == events
    engine.dispose()
    return events / written, events / sealed, events / verified


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    args = parser.parse_args()
    print(f"{'database':<12} {'write unchained':>15} {'write ev/s':>11} {'seal ev/s':>10} "
          f"{'verify ev/s':>12}")
    for backend in ("sqlite", "postgresql"):
        with database(backend, args.pg_url) as url:
            bare, _, _ = measure(url, args.events, bare=True)
        with database(backend, args.pg_url) as url:
            write, seal, verify = measure(url, args.events)
        print(f"{backend:<12} {bare:>15,.0f} {write:>11,.0f} {seal:>10,.0f} {verify:>12,.0f}")


if __name__ == "__main__":
    main()
