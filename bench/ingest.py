"""Ingest throughput: a generated backlog in a real Dovecot mailbox, drained by the daemon's
own mailbox runner (IMAP fetch → parse + classify + thread + store → move to Processed), with
each new ticket's acknowledgement composed and queued in the outbox.

The backlog is appended to a throwaway Dovecot on loopback first (not timed); the clock runs
from the first SEARCH to the last move. `--from files` feeds the same backlog to the ingest
step directly, in the runner's batches, to show what IMAP adds.
Each configuration runs in a fresh child process so that its peak RSS is its own.
Usage: python bench/ingest.py [--count 5000] [--pg-url URL] [--from imap|files]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 50  # the mailbox runner's batch
PG_DEFAULT = os.environ.get("TICKETD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def child(backend: str, count: int, pg_url: str, acks: bool, source: str = "imap",
          encrypt: bool = False, sqlcipher: bool = False, profile: int = 0) -> dict:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from bench.corpus import backlog
    from daemon.ingest import Ingestor, IngestPolicy
    from responders.acks import AckPolicy
    from responders.identity import Identity
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
    masters = _masters() if encrypt else None
    # With SQLCipher, as the daemon opens SQLite when a key file is set; without, the
    # database in clear (the cost of sealing files alone).
    engine = db.make_engine(url, masters=masters if sqlcipher else None)
    db.upgrade(engine)
    statements = _count_statements(engine)
    keys = (b"bench-key-0123456789abcdef012345",)
    identity = Identity("support@casino.test", "Casino Support", keys, Templates(frozen=True))
    ack = AckPolicy(identity, per_address_10min=10**9, per_address_day=10**9)
    policy = IngestPolicy(support_addresses=frozenset({"support@casino.test"}), keys=keys,
                          ack=ack if acks else None)
    vault = None
    if masters is not None:
        from storage.vault import Vault

        vault = Vault(masters)
    sessions = db.session_factory(engine, vault)
    ingestor = Ingestor(sessions, BlobStore(work / "state"), policy)
    outcomes: dict[str, int] = {}

    def tally(result, _seconds: float) -> None:  # noqa: ANN001
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1

    size = 0
    if source == "imap":
        from daemon.imap import ImapSource
        from daemon.mailbox import MailboxRunner
        from tests.support.dovecot import DovecotServer, find_dovecot

        binary = find_dovecot()
        if binary is None:
            raise SystemExit("dovecot is not installed (apt-get install dovecot-imapd)")
        dovecot = DovecotServer.start_new(binary)
        try:
            account = dovecot.new_account()
            with dovecot.client(account) as client:
                chunk: list[bytes] = []
                for raw in backlog(count):
                    size += len(raw)
                    chunk.append(raw)
                    if len(chunk) == 200:
                        client.multiappend("INBOX", chunk)
                        chunk = []
                if chunk:
                    client.multiappend("INBOX", chunk)
            imap = ImapSource(host=account.host, port=account.port, tls="none",
                              username=account.username, password=account.password)
            imap.connect()
            runner = MailboxRunner(imap, ingestor, sessions, name="bench", on_result=tally)
            statements.clear()
            cpu0, t0 = time.process_time(), time.perf_counter()
            with _profiled(profile):
                runner.drain()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            imap.close()
        finally:
            dovecot.stop()
            dovecot.remove_directory()
    else:
        # The backlog is spooled to files first, so memory holds one batch at a time.
        spool = work / "spool"
        spool.mkdir()
        for i, raw in enumerate(backlog(count)):
            (spool / f"{i:07d}.eml").write_bytes(raw)
            size += len(raw)
        paths = sorted(spool.iterdir())
        statements.clear()
        cpu0, t0 = time.process_time(), time.perf_counter()
        with _profiled(profile):
            for start in range(0, len(paths), BATCH):
                batch = [(path.read_bytes(), path.name) for path in paths[start:start + BATCH]]
                for result in ingestor.ingest_many(batch):
                    tally(result, 0.0)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    executed = len(statements)
    sql_ms = _searches_ms(sessions)
    engine.dispose()
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    return {
        "backend": backend, "from": source, "acks": "yes" if acks else "no", "count": count, "mb": size / 2**20, "wall": wall, "cpu": cpu,
        "rate": count / wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "outcomes": outcomes, "search_ms": sql_ms, "statements_per_mail": executed / count,
    }


def _count_statements(engine) -> list[None]:  # noqa: ANN001
    """A list that grows by one per statement sent to the database (an executemany is one)."""
    from sqlalchemy import event

    sent: list[None] = []
    event.listen(engine, "before_cursor_execute", lambda *_: sent.append(None))
    return sent


@contextlib.contextmanager
def _profiled(top: int) -> Iterator[None]:
    """With `top`, the timed part runs under cProfile and its `top` entries by cumulative
    and by own time go to stderr (the figures then include the profiler's cost)."""
    if not top:
        yield
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        for order in ("cumulative", "tottime"):
            pstats.Stats(profiler, stream=sys.stderr).sort_stats(order).print_stats(top)


def _masters():  # noqa: ANN202
    """[privacy] key_file set: every mail's files and ack sealed (bench/crypto.py)."""
    from storage.crypto import MasterKeys

    return MasterKeys.of((os.urandom(32),))


def _searches_ms(sessions) -> float:  # noqa: ANN001
    """SQL reads after the ingest: the mean of 200 `ticketd search` queries, in ms."""
    from storage import search

    words = ("refund", "withdrawal", "bonus", "account")
    with sessions() as session:
        t0 = time.perf_counter()
        for i in range(200):
            search.search(session, words[i % len(words)], 20)
        return (time.perf_counter() - t0) / 200 * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--pg-url", default=PG_DEFAULT)
    ap.add_argument("--from", dest="source", choices=("imap", "files", "both"), default="both")
    ap.add_argument("--profile", type=int, default=0, metavar="TOP",
                    help="with --child: profile the timed part, print the TOP entries to stderr")
    ap.add_argument("--child", nargs=4, metavar=("BACKEND", "COUNT", "ACKS", "FROM"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        backend, count, acks, source = args.child
        print(json.dumps(child(backend, int(count), args.pg_url, acks == "1", source,
                               profile=args.profile)))
        return
    sources = ("imap", "files") if args.source == "both" else (args.source,)
    # Memory must stay flat as the backlog grows: compare the 1/5 backlog with the whole.
    runs = [(source, backend, count, acks) for source in sources for backend, count, acks in (
        ("sqlite", args.count // 5, True), ("sqlite", args.count, False),
        ("sqlite", args.count, True), ("postgresql", args.count, False),
        ("postgresql", args.count, True))]
    print(f"{'from':<5} {'backend':<11} {'acks':>4} {'mails':>6} {'MB':>6} {'wall s':>7} "
          f"{'cpu s':>7} {'mails/s':>8} {'SQL/mail':>8} {'peak RSS MB':>11}  outcomes")
    for source, backend, count, acks in runs:
        out = subprocess.run([sys.executable, __file__, "--child", backend, str(count),
                              "1" if acks else "0", source, "--pg-url", args.pg_url],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['from']:<5} {r['backend']:<11} {r['acks']:>4} {r['count']:>6} {r['mb']:>6.1f} "
              f"{r['wall']:>7.2f} {r['cpu']:>7.2f} {r['rate']:>8.0f} "
              f"{r['statements_per_mail']:>8.1f} "
              f"{r['rss_mb']:>11.0f}  "
              f"{r['outcomes']}")


if __name__ == "__main__":
    main()
