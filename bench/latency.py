"""Latency from IMAP APPEND to the acknowledgement accepted by the SMTP server, with IDLE.

A throwaway Dovecot on loopback, an aiosmtpd sink in this process, a migrated SQLite
database, and the daemon as a user runs it (`python -m daemon --config CFG run`, with
outbox interval 5 s: the sender is woken when a ticket is created, so the interval must not
show). Then, N times: APPEND one new player's mail over a logged-in IMAP connection and time
until the sink holds the acknowledgement to that player (polled every 2 ms). For reference,
Dovecot's own share is measured first: APPEND until an idle client hears EXISTS.
Nothing leaves the machine. Usage: python bench/latency.py [--mails 200]
Importable: measure(mails) -> dict (median_ms, p99_ms, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imapclient import IMAPClient  # noqa: E402

from storage import db  # noqa: E402
from tests.outbox.smtp_sink import Sink, SmtpServer, free_port  # noqa: E402
from tests.support.configs import write_config  # noqa: E402
from tests.support.dovecot import DovecotServer, find_dovecot  # noqa: E402
from tests.support.mails import mail  # noqa: E402

SECRET = "bench-latency-secret-0123456789abcdef"
POLL = 0.002
FIRST_TIMEOUT = 60.0  # the daemon starts, migrates nothing, logs in and IDLEs
TIMEOUT = 20.0


def _wait_ack(sink: Sink, player: str, seen: int, timeout: float) -> float | None:
    """perf_counter() when an acknowledgement to `player` is among the mails after `seen`."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        received = sink.received
        if len(received) > seen and any(player in r.rcpt_tos for r in received[seen:]):
            return time.perf_counter()
        time.sleep(POLL)
    return None


def idle_notification(dovecot: DovecotServer, samples: int = 20) -> list[float]:
    """Seconds from APPEND until an IDLE client of the same mailbox hears EXISTS: Dovecot's
    own share of the latency (it batches mailbox changes before notifying)."""
    account = dovecot.new_account()
    watcher = IMAPClient(account.host, account.port, ssl=False, timeout=10)
    writer = IMAPClient(account.host, account.port, ssl=False, timeout=10)
    times = []
    try:
        watcher.login(account.username, account.password)
        writer.login(account.username, account.password)
        watcher.select_folder("INBOX")
        for i in range(samples):
            watcher.idle()
            started = time.perf_counter()
            writer.append("INBOX", mail(subject=f"idle probe {i}"))
            heard = None
            while time.perf_counter() - started < TIMEOUT:
                if any(r[1:2] == (b"EXISTS",) for r in watcher.idle_check(timeout=TIMEOUT)):
                    heard = time.perf_counter()
                    break
            watcher.idle_done()
            if heard is not None:
                times.append(heard - started)
    finally:
        for client in (watcher, writer):
            try:
                client.logout()
            except Exception:  # noqa: BLE001
                pass
    return sorted(times)


def measure(mails: int = 200) -> dict:
    binary = find_dovecot()
    if binary is None:
        raise RuntimeError("dovecot not installed")
    work = Path(tempfile.mkdtemp(prefix="ticketd-latency-"))
    dovecot = DovecotServer.start_new(binary)
    smtp = SmtpServer(Sink(), free_port()).start()
    daemon = None
    try:
        idle = idle_notification(dovecot)
        account = dovecot.new_account()
        url = f"sqlite:///{work / 'ticketd.db'}"
        engine = db.make_engine(url)
        db.upgrade(engine)
        engine.dispose()
        config = write_config(work, url, account,
                              smtp={"host": "127.0.0.1", "port": smtp.port, "tls": "none"},
                              outbox={"interval": "5s"})
        log = work / "daemon.log"
        env = {**os.environ, "TICKETD_SECURITY__SECRET": SECRET}
        with log.open("w") as out:
            daemon = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config), "run"],
                                      stdout=out, stderr=subprocess.STDOUT, env=env,
                                      cwd=str(Path(__file__).resolve().parents[1]))
        client = IMAPClient(account.host, account.port, ssl=False, timeout=10)
        client.login(account.username, account.password)
        sink: Sink = smtp.handler
        times: list[float] = []
        lost = 0
        try:
            for i in range(mails + 1):  # mail 0 warms up: daemon start, first login, IDLE
                player = f"latency{i}@players.test"
                raw = mail(sender=f"Player {i} <{player}>", subject=f"Withdrawal pending {i}",
                           body="Hello, my withdrawal of 50 EUR is pending for three days.")
                seen = len(sink.received)
                started = time.perf_counter()
                client.append("INBOX", raw)
                done = _wait_ack(sink, player, seen, FIRST_TIMEOUT if i == 0 else TIMEOUT)
                if done is None:
                    if daemon.poll() is not None:
                        raise RuntimeError(f"daemon exited ({daemon.returncode}); "
                                           f"log: {log.read_text()[-500:]}")
                    if i == 0:
                        raise RuntimeError(f"no acknowledgement within {FIRST_TIMEOUT:.0f} s; "
                                           f"log: {log.read_text()[-500:]}")
                    lost += 1
                    continue
                if i:
                    times.append(done - started)
        finally:
            try:
                client.logout()
            except Exception:  # noqa: BLE001
                pass
        if not times:
            raise RuntimeError("no acknowledgement arrived")
        times.sort()
        return {"mails": mails, "acked": len(times), "lost": lost,
                "median_ms": statistics.median(times) * 1e3,
                "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3,
                "max_ms": times[-1] * 1e3, "min_ms": times[0] * 1e3,
                "idle_notify_median_ms": statistics.median(idle) * 1e3 if idle else None}
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(10)
        smtp.stop()
        dovecot.stop()
        dovecot.remove_directory()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mails", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = measure(args.mails)
    if args.json:
        print(json.dumps(r))
        return
    print(f"APPEND -> acknowledgement accepted by SMTP, {r['acked']}/{r['mails']} mails "
          f"(lost {r['lost']}): median {r['median_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
          f"min {r['min_ms']:.1f} ms, max {r['max_ms']:.1f} ms")
    if r["idle_notify_median_ms"] is not None:
        print(f"of which Dovecot's IDLE notification (APPEND -> EXISTS to an idle client), "
              f"median: {r['idle_notify_median_ms']:.1f} ms")


if __name__ == "__main__":
    main()
