"""Webhook throughput: a backlog of queued events posted to a local HTTP server.

Through the whole outbox (claim, sign, post, one commit per event) on SQLite and PostgreSQL,
with one keep-alive HTTP client per pass. The server is http.server in a child process on
loopback, answering 200 to everything; nothing leaves the machine. Prints a table; asserts
nothing about timings.
Usage: python bench/webhooks.py [--count 1000] [--batch 50] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402

from daemon.outbox import OutboxSender  # noqa: E402
from daemon.webhooks import WebhookTransport, queue_event  # noqa: E402
from responders.webhooks import TICKET_CREATED, WebhookEvents  # noqa: E402
from storage import db, queries  # noqa: E402

HOST = "127.0.0.1"
PG_DEFAULT = os.environ.get("TICKETD_TEST_PG_URL",
                            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


@contextmanager
def platform() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        for _ in range(100):
            try:
                socket.create_connection((HOST, port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://{HOST}:{port}/hooks"
    finally:
        child.terminate()
        child.wait(10)


def run(url: str, db_url: str, count: int, batch: int) -> float:
    """Events per second through the outbox to the platform."""
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    with sessions.begin() as session:
        who = queries.contact_id(session, "player@mail.test", "Player")
        ticket = queries.insert_ticket(session, subject="Bench", requester_id=who)[0]
        for index in range(count):
            queue_event(session, WebhookEvents(url), TICKET_CREATED, ticket,
                        cause=f"bench {index}")
    sender = OutboxSender(sessions, None, ops_address=None, batch=batch,
                          webhooks=WebhookTransport(url, (b"bench-key-0123456789abcdef",)))
    started = time.perf_counter()
    stats = asyncio.run(sender.drain())
    elapsed = time.perf_counter() - started
    engine.dispose()
    assert stats.sent == count, stats
    return count / elapsed


@contextmanager
def pg_database(admin_url: str) -> Iterator[str | None]:
    name = f"ticketd_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:  # noqa: BLE001 - no server: the row is left out
        yield None
        return
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--pg-url", default=PG_DEFAULT)
    args = parser.parse_args()
    rows = []
    with platform() as url, tempfile.TemporaryDirectory() as tmp:
        rows.append(("SQLite", run(url, f"sqlite:///{tmp}/bench.db", args.count, args.batch)))
        with pg_database(args.pg_url) as pg:
            if pg:
                rows.append(("PostgreSQL", run(url, pg, args.count, args.batch)))
    print(f"{args.count} webhooks, batch {args.batch}, one client per pass, loopback HTTP")
    print(f"{'database':<12} {'events/s':>10}")
    for name, rate in rows:
        print(f"{name:<12} {rate:>10.0f}")


if __name__ == "__main__":
    main()
