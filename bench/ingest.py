"""Ingest throughput: a generated backlog through parse + classify + thread + store.

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


def child(backend: str, count: int, pg_url: str) -> dict:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from bench.corpus import backlog
    from daemon.ingest import IngestPolicy, Ingestor
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
    ingestor = Ingestor(db.session_factory(engine), BlobStore(work / "state"),
                        IngestPolicy(support_addresses=frozenset({"support@casino.test"})))
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
        "backend": backend, "count": count, "mb": size / 2**20, "wall": wall, "cpu": cpu,
        "rate": count / wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "outcomes": outcomes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--pg-url", default=PG_DEFAULT)
    ap.add_argument("--child", nargs=2, metavar=("BACKEND", "COUNT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.pg_url)))
        return
    runs = [("sqlite", args.count // 5), ("sqlite", args.count), ("postgresql", args.count)]
    print(f"{'backend':<11} {'mails':>6} {'MB':>6} {'wall s':>7} {'cpu s':>7} {'mails/s':>8} {'peak RSS MB':>11}  outcomes")
    for backend, count in runs:
        out = subprocess.run([sys.executable, __file__, "--child", backend, str(count), "--pg-url", args.pg_url],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['backend']:<11} {r['count']:>6} {r['mb']:>6.1f} {r['wall']:>7.2f} {r['cpu']:>7.2f} "
              f"{r['rate']:>8.0f} {r['rss_mb']:>11.0f}  {r['outcomes']}")


if __name__ == "__main__":
    main()
