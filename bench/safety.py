"""What safety before classification costs per mail: the spam verdict and the responsible-
gambling phrases (pure, per mail), and one clamd INSTREAM scan per attachment size.

clamd here is the tests' own (tests/support/clamd.py: a database of two signatures), so the
scan figures are the protocol and transfer cost; a production clamd with its full database
spends more per byte inside clamd itself.
Usage: python bench/safety.py [--mails 2000] [--scans 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.scan import ClamdScanner  # noqa: E402
from parsers import parse  # noqa: E402
from parsers.reply import visible_text  # noqa: E402
from parsers.rg import responsible_gambling  # noqa: E402
from parsers.spam import SpamPolicy, spam_verdict  # noqa: E402
from tests.support.clamd import ClamdServer, require_clamd  # noqa: E402
from tests.support.mails import mail  # noqa: E402

HOPS = (b"X-Spam-Status: No, score=0.3\r\nReceived: from a by mx1.casino.test\r\n"
        b"Received: from b by mx.mail.test\r\n")


def per_call_us(fn, items: list) -> tuple[float, float]:  # noqa: ANN001
    times = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - started) * 1e6)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mails", type=int, default=2000)
    ap.add_argument("--scans", type=int, default=200)
    args = ap.parse_args()
    bodies = ["Please refund my deposit of 100 EUR, the payment did not arrive. " * 20,
              "Здравствуйте, прошу вернуть деньги, ставка рассчитана неверно. " * 20]
    mails = [parse(HOPS + mail(sender=f"p{i}@mail.test", body=bodies[i % 2]))
             for i in range(args.mails)]
    policy = SpamPolicy()
    texts = [(m.subject, visible_text(m.text, m.html)) for m in mails]
    print(f"{'step':<44} {'median µs':>10} {'p99 µs':>10}")
    median, p99 = per_call_us(lambda m: spam_verdict(m, policy), mails)
    print(f"{'spam verdict (5 headers, 2 hops)':<44} {median:>10.1f} {p99:>10.1f}")
    median, p99 = per_call_us(lambda t: responsible_gambling(*t), texts)
    print(f"{'responsible-gambling phrases (~1.3 KB text)':<44} {median:>10.1f} {p99:>10.1f}")
    server = ClamdServer.start_new(require_clamd())
    try:
        for label, scanner in (("unix", ClamdScanner(socket_path=server.socket_path)),
                               ("tcp", ClamdScanner(address=server.address))):
            for size in (10_000, 1_000_000):
                payload = os.urandom(size)
                median, p99 = per_call_us(scanner.scan, [payload] * args.scans)
                print(f"{f'clamd INSTREAM over {label}, {size:,} bytes':<44} "
                      f"{median:>10.1f} {p99:>10.1f}")
    finally:
        server.stop()
        server.remove_directory()


if __name__ == "__main__":
    main()
