"""Ingest throughput: a generated backlog through parse + classify + thread + store,
with each new ticket's acknowledgement composed and queued in the outbox.

Each configuration runs in a fresh child process so that its peak RSS is its own.
Usage: python bench/ingest.py [--count 5000] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PG_DEFAULT = os.environ.get("TICKETD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def child(backend: str, count: int, pg_url: str, acks: bool) -> dict:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from bench.corpus import backlog
    from daemon.ingest import IngestPolicy, Ingestor
    from responders.acks import AckPolicy
    from responders.rendering import Templates
    from storage import db
    from storage.blobs import BlobStore

    work = Path(tempfile.mkdtemp(prefix="ticketd-bench-"))
    admin = None
    if backend == "sqlite":
        url = f"sqlite:///{work / 'bench.db'}"
    else:
        name = f"ticketd_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    engine = db.make_engine(url)
    db.upgrade(engine)
    keys = (b"bench-key-0123456789abcdef012345",)
    ack = AckPolicy(support_address="support@casino.test", support_name="Casino Support",
                    keys=keys, templates=Templates(), per_address_10min=10**9, per_address_day=10**9)
    policy = IngestPolicy(support_addresses=frozenset({"support@casino.test"}), keys=keys,
                          ack=ack if acks else None)
    ingestor = Ingestor(db.session_factory(engine), BlobStore(work / "state"), policy)
    # The backlog is spooled to files first, so memory holds one mail at a time.
    spool = work / "spool"
    spool.mkdir()
    size = 0
    for i, raw in enumerate(backlog(count)):
        (spool / f"{i:07d}.eml").write_bytes(raw)
        size += len(raw)
    outcomes: dict[str, int] = {}
    cpu0, t0 = time.process_time(), time.perf_counter()
    for path in sorted(spool.iterdir()):
        result = ingestor.ingest(path.read_bytes(), "bench")
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    engine.dispose()
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    return {
        "backend": backend, "acks": "yes" if acks else "no", "count": count, "mb": size / 2**20, "wall": wall, "cpu": cpu,
        "rate": count / wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "outcomes": outcomes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--pg-url", default=PG_DEFAULT)
    ap.add_argument("--child", nargs=3, metavar=("BACKEND", "COUNT", "ACKS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.pg_url, args.child[2] == "1")))
        return
    # Memory must stay flat as the backlog grows: compare the 1/5 backlog with the whole.
    runs = [("sqlite", args.count // 5, False), ("sqlite", args.count, False),
            ("sqlite", args.count, True), ("postgresql", args.count, False),
            ("postgresql", args.count, True)]
    print(f"{'backend':<11} {'acks':>4} {'mails':>6} {'MB':>6} {'wall s':>7} {'cpu s':>7} {'mails/s':>8} {'peak RSS MB':>11}  outcomes")
    for backend, count, acks in runs:
        out = subprocess.run([sys.executable, __file__, "--child", backend, str(count),
                              "1" if acks else "0", "--pg-url", args.pg_url],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['backend']:<11} {r['acks']:>4} {r['count']:>6} {r['mb']:>6.1f} {r['wall']:>7.2f} {r['cpu']:>7.2f} "
              f"{r['rate']:>8.0f} {r['rss_mb']:>11.0f}  {r['outcomes']}")


if __name__ == "__main__":
    main()
