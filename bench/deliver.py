"""Outbox throughput: a backlog of queued mails sent to a local aiosmtpd sink.

Compares one SMTP connection per mail with one connection reused for each claimed batch,
through the whole outbox (claim, send, one commit per batch) on SQLite and PostgreSQL, and
the transport alone for reference. The sink runs in its own process; nothing leaves the
machine. Prints a table; asserts nothing about timings.
Usage: python bench/deliver.py [--count 2000] [--batch 50] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import backlog  # noqa: E402
from daemon.outbox import OutboxSender  # noqa: E402
from responders.transport import SendResult, SmtpTransport  # noqa: E402
from storage import db, outbox  # noqa: E402

HOST = "127.0.0.1"
PG_DEFAULT = os.environ.get("TICKETD_TEST_PG_URL",
                            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


class ConnectionPerMail:
    """The transport as a naive sender would use it: connect, send one mail, QUIT."""

    def __init__(self, transport: SmtpTransport) -> None:
        self._transport = transport

    @asynccontextmanager
    async def session(self) -> AsyncIterator[ConnectionPerMail]:
        yield self

    async def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult:
        async with self._transport.session() as smtp:
            return await smtp.send(envelope_from, recipients, raw)


@contextmanager
def sink() -> Iterator[int]:
    """An aiosmtpd server that accepts and discards, in a child process; yields its port."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{HOST}:{port}",
                              "-c", "aiosmtpd.handlers.Sink"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        child.terminate()
        child.wait(10)


@contextmanager
def database(backend: str, pg_url: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ticketd-bench-") as work:
            yield f"sqlite:///{Path(work) / 'bench.db'}"
        return
    name = f"ticketd_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def through_outbox(url: str, transport: object, mails: list[bytes], batch: int,
                   commit_every: int = 1) -> float:
    """Seconds to drain an outbox holding `mails`."""
    engine = db.make_engine(url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    with sessions.begin() as session:
        for i, raw in enumerate(mails):
            outbox.enqueue(session, raw=raw, message_id=f"<bench-{i}@casino.test>",
                           envelope_from="support@casino.test",
                           recipients=[f"player{i}@players.test"], kind="ack")
    sender = OutboxSender(sessions, transport, ops_address=None, batch=batch,  # type: ignore[arg-type]
                          commit_every=commit_every)
    started = time.perf_counter()
    stats = asyncio.run(sender.drain())
    elapsed = time.perf_counter() - started
    engine.dispose()
    assert stats.sent == len(mails), stats
    return elapsed


def transport_only(transport: object, mails: list[bytes]) -> float:
    async def go() -> None:
        async with transport.session() as smtp:  # type: ignore[attr-defined]
            for i, raw in enumerate(mails):
                await smtp.send("support@casino.test", [f"player{i}@players.test"], raw)

    started = time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--pg-url", default=PG_DEFAULT)
    ap.add_argument("--commit-every", type=int, default=1,
                    help="[outbox] commit_every: outcomes committed together (default 1)")
    args = ap.parse_args()
    mails = list(backlog(args.count))
    size = sum(map(len, mails)) / len(mails) / 1024
    print(f"{args.count} mails, {size:.1f} KiB on average, batches of {args.batch}, "
          f"outcomes committed {args.commit_every} at a time\n")
    print(f"{'path':<22} {'connections':<17} {'mails':>6} {'total s':>8} {'mails/s':>8}")
    with sink() as port:
        reused = SmtpTransport(HOST, port, tls="none", local_hostname="localhost")
        modes = [("one per mail", ConnectionPerMail(reused)), ("reused per batch", reused)]
        runs = [("smtp only", None), ("outbox on sqlite", "sqlite"),
                ("outbox on postgresql", "postgresql")]
        for path, backend in runs:
            for mode, transport in modes:
                if backend is None:
                    elapsed = transport_only(transport, mails)
                else:
                    with database(backend, args.pg_url) as url:
                        elapsed = through_outbox(url, transport, mails, args.batch,
                                                 args.commit_every)
                print(f"{path:<22} {mode:<17} {len(mails):>6} {elapsed:>8.2f} "
                      f"{len(mails) / elapsed:>8.0f}")
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
