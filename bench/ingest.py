"""Ingest throughput: a generated backlog in a real Dovecot mailbox, drained by the daemon's
own mailbox runner (IMAP fetch → parse + classify + thread + store → move to Processed), with
each new ticket's acknowledgement composed and queued in the outbox.

The backlog is appended to a throwaway Dovecot on loopback first (not timed); the clock runs
from the first SEARCH to the last move. `--from files` feeds the same backlog to the ingest
step directly, in the runner's batches, to show what IMAP adds. `--from floor` drains the
same backlog from Dovecot as the runner does (its batch, its SEARCH, its two FETCHes, its move
to Processed) with no store at all: once doing nothing with the bytes, once with the eager
parse of bench/parse_limit.py on each mail; that is the ceiling no store can beat.
Each configuration runs in a fresh child process so that its peak RSS is its own. A child
run may switch on what a deployment adds: `--encrypt`, every mail's files sealed as with
`[privacy] key_file` (the database in clear), and `--scan`, each attachment scanned by
clamd as with `[scan]` (the tests' clamd and its two-signature database, started before
the clock and stopped after it).
Usage: python bench/ingest.py [--count 5000] [--pg-url URL] [--from imap|files|floor|both|all]
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
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 50  # the mailbox runner's batch (checked against it in floor_child)
FLOOR_WORK = ("none", "eager")  # what the floor does with each fetched mail
PG_DEFAULT = os.environ.get("TICKETD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def child(backend: str, count: int, pg_url: str, acks: bool, source: str = "imap",
          encrypt: bool = False, sqlcipher: bool = False, scan: bool = False,
          profile: int = 0) -> dict:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

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
    with contextlib.ExitStack() as stack:
        screener = stack.enter_context(_clamd_screener(url)) if scan else None
        ingestor = Ingestor(sessions, BlobStore(work / "state"), policy, screener)
        result = _timed_ingest(ingestor, sessions, statements, work, count, source, profile)
    engine.dispose()
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    return {
        "backend": backend, "from": source, "acks": "yes" if acks else "no",
        "encrypt": "files+db" if encrypt and sqlcipher else "files" if encrypt else "no",
        "scan": "clamd" if scan else "no", **result,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _timed_ingest(ingestor, sessions, statements: list[None], work: Path,  # noqa: ANN001
                  count: int, source: str, profile: int) -> dict:
    """The backlog through `ingestor`, from Dovecot or from files: the clock, the SQL
    statements and the outcomes of the timed part, then the search reads after it."""
    from bench.corpus import backlog

    outcomes: dict[str, int] = {}

    def tally(result, _seconds: float) -> None:  # noqa: ANN001
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1

    size = 0
    server_cpu = None
    if source == "imap":
        from daemon.mailbox import MailboxRunner

        with _mailbox_backlog(count) as (imap, size, server):
            runner = MailboxRunner(imap, ingestor, sessions, name="bench", on_result=tally)
            statements.clear()
            cpu0, t0, server0 = time.process_time(), time.perf_counter(), server()
            with _profiled(profile):
                runner.drain()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            server_cpu = server() - server0
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
    return {
        "count": count, "mb": size / 2**20, "wall": wall, "cpu": cpu, "server_cpu": server_cpu,
        "rate": count / wall, "outcomes": outcomes, "search_ms": _searches_ms(sessions),
        "statements_per_mail": executed / count,
    }


@contextlib.contextmanager
def _clamd_screener(url: str) -> Iterator[object]:
    """The tests' clamd (tests/support/clamd.py: two signatures, so the scan cost is the
    protocol and the transfer, not a full database's matching), and the screener the daemon
    builds from settings whose `[scan] socket` is clamd's; clamd is stopped afterwards."""
    from config.schema import Settings
    from daemon.safety import screener
    from tests.support.clamd import ClamdServer, require_clamd

    server = ClamdServer.start_new(require_clamd())
    try:
        yield screener(Settings(database={"url": url}, scan={"socket": str(server.socket_path)}))
    finally:
        server.stop()
        server.remove_directory()


def floor_child(work: str, count: int, profile: int = 0) -> dict:
    """The IMAP floor: the backlog drained from Dovecot as the runner drains it, with `work`
    ("none" or "eager") done on each mail and nothing stored."""
    import inspect

    from bench.parse_limit import eager
    from daemon.mailbox import MailboxRunner

    batch = inspect.signature(MailboxRunner).parameters["batch_size"].default
    if batch != BATCH:
        raise SystemExit(f"the runner's batch is {batch}, this bench assumes {BATCH}")
    on_each = eager if work == "eager" else (lambda _raw: None)
    with _mailbox_backlog(count) as (imap, size, server):
        cpu0, t0, server0 = time.process_time(), time.perf_counter(), server()
        with _profiled(profile):
            moved = _drain_bare(imap, on_each, batch)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        server_cpu = server() - server0
    if moved != count:
        raise SystemExit(f"moved {moved} of {count} mails")
    return {"work": work, "count": count, "mb": size / 2**20, "wall": wall, "cpu": cpu,
            "server_cpu": server_cpu, "rate": count / wall,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _drain_bare(source, on_each, batch: int) -> int:  # noqa: ANN001 - daemon.imap.ImapSource
    """MailboxRunner.drain with the ingest taken out: per batch the same NOOP + SEARCH, the
    same two FETCHes (sizes, then BODY.PEEK[] and INTERNALDATE) and the same move to
    Processed, `on_each` called on every mail's bytes in between. The runner's cursor
    commit after each batch is left out: it is storage. Returns the mails moved."""
    moved = 0
    while uids := source.pending(batch):
        fetched = source.fetch(uids)
        for mail in fetched:
            if mail.raw is not None:
                on_each(mail.raw)
        source.mark_processed([mail.uid for mail in fetched])
        moved += len(fetched)
    return moved


@contextlib.contextmanager
def _mailbox_backlog(count: int) -> Iterator[tuple[object, int, Callable[[], float]]]:
    """A throwaway Dovecot whose INBOX holds the backlog (appended, not timed); yields the
    daemon's ImapSource connected to it, the backlog's bytes, and a clock of Dovecot's CPU
    seconds (all its processes)."""
    from bench.corpus import backlog
    from daemon.imap import ImapSource
    from tests.support.dovecot import DovecotServer, find_dovecot

    binary = find_dovecot()
    if binary is None:
        raise SystemExit("dovecot is not installed (apt-get install dovecot-imapd)")
    dovecot = DovecotServer.start_new(binary)
    try:
        account = dovecot.new_account()
        size = 0
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
        try:
            yield imap, size, lambda: _tree_cpu(dovecot.pid)
        finally:
            imap.close()
    finally:
        dovecot.stop()
        dovecot.remove_directory()


def _tree_cpu(root: int | None) -> float:
    """CPU seconds of a process and its descendants, those that ended included (from
    /proc; 0 where there is none)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            # Fields after the ")" that ends the command name: state, ppid, ... utime is
            # the 12th, stime, cutime, cstime follow.
            stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    ticks = 0
    wanted = {root} if root in stats else set()
    while wanted:
        pid = wanted.pop()
        fields = stats.pop(pid)
        # A child's cutime/cstime hold only its own children that ended: no longer in /proc,
        # so no process is counted twice.
        ticks += sum(int(f) for f in fields[11:15])
        wanted |= {child for child, f in stats.items() if int(f[1]) == pid}
    return ticks / os.sysconf("SC_CLK_TCK")


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
        if os.environ.get("TICKETD_BENCH_PROFILE_FILE"):
            profiler.dump_stats(os.environ["TICKETD_BENCH_PROFILE_FILE"])
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
    ap.add_argument("--from", dest="source", choices=("imap", "files", "floor", "both", "all"),
                    default="both", help="both: imap and files; all: those and floor")
    ap.add_argument("--profile", type=int, default=0, metavar="TOP",
                    help="with --child: profile the timed part, print the TOP entries to stderr "
                         "(and write the whole profile to $TICKETD_BENCH_PROFILE_FILE if set)")
    ap.add_argument("--child", nargs=4, metavar=("BACKEND", "COUNT", "ACKS", "FROM"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--encrypt", action="store_true",
                    help="with --child: files sealed as with [privacy] key_file, database in clear")
    ap.add_argument("--scan", action="store_true",
                    help="with --child: attachments scanned by the tests' clamd, as with [scan]")
    ap.add_argument("--floor-child", nargs=2, metavar=("WORK", "COUNT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        backend, count, acks, source = args.child
        print(json.dumps(child(backend, int(count), args.pg_url, acks == "1", source,
                               encrypt=args.encrypt, scan=args.scan, profile=args.profile)))
        return
    if args.floor_child:
        work, count = args.floor_child
        if work not in FLOOR_WORK:
            ap.error(f"WORK must be one of {', '.join(FLOOR_WORK)}")
        print(json.dumps(floor_child(work, int(count), profile=args.profile)))
        return
    sources = {"both": ("imap", "files"), "all": ("imap", "files", "floor")}.get(
        args.source, (args.source,))
    stores = [s for s in sources if s != "floor"]
    if stores:
        _print_stores(stores, args.count, args.pg_url)
    if "floor" in sources:
        _print_floor(args.count)


def _print_stores(sources: list[str], count: int, pg_url: str) -> None:
    # Memory must stay flat as the backlog grows: compare the 1/5 backlog with the whole.
    runs = [(source, backend, n, acks) for source in sources for backend, n, acks in (
        ("sqlite", count // 5, True), ("sqlite", count, False),
        ("sqlite", count, True), ("postgresql", count, False),
        ("postgresql", count, True))]
    print(f"{'from':<5} {'backend':<11} {'acks':>4} {'mails':>6} {'MB':>6} {'wall s':>7} "
          f"{'cpu s':>7} {'mails/s':>8} {'SQL/mail':>8} {'peak RSS MB':>11}  outcomes")
    for source, backend, n, acks in runs:
        r = _run_child(["--child", backend, str(n), "1" if acks else "0", source,
                        "--pg-url", pg_url])
        print(f"{r['from']:<5} {r['backend']:<11} {r['acks']:>4} {r['count']:>6} {r['mb']:>6.1f} "
              f"{r['wall']:>7.2f} {r['cpu']:>7.2f} {r['rate']:>8.0f} "
              f"{r['statements_per_mail']:>8.1f} "
              f"{r['rss_mb']:>11.0f}  "
              f"{r['outcomes']}")


def _print_floor(count: int) -> None:
    """The floor rows, each set against the eager limit measured here (best of three)."""
    from bench.corpus import backlog
    from bench.parse_limit import best, eager

    limit = best(list(backlog(count)), eager)
    print(f"IMAP floor, no store; eager parse limit {limit:.0f} mails/s")
    print(f"{'work':<6} {'mails':>6} {'MB':>6} {'wall s':>7} {'cpu s':>7} {'dovecot s':>9} "
          f"{'mails/s':>8} {'of eager':>8} {'peak RSS MB':>11}")
    for work in FLOOR_WORK:
        r = _run_child(["--floor-child", work, str(count)])
        print(f"{r['work']:<6} {r['count']:>6} {r['mb']:>6.1f} {r['wall']:>7.2f} {r['cpu']:>7.2f} "
              f"{r['server_cpu']:>9.2f} {r['rate']:>8.0f} {r['rate'] / limit:>8.1%} "
              f"{r['rss_mb']:>11.0f}")


def _run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])

if __name__ == "__main__":
    main()
