"""The limit of parsing on this machine: Python's own `email` package reading the same
backlog alone (no classification, threading or storage), mails/s, best of three passes.

The limit is the **eager** parse: `email.message_from_bytes(policy=email.policy.default)`,
`get_content()` of every leaf part (`get_payload(decode=True)` where `get_content` raises:
an unknown charset, say) and reading From, To, Subject, Date and Message-ID. That is the
least any ingest that reads a mail must do. Two older rows stay beside it for comparison:
`compat32` and `default` with a bare walk, which are lazy (they decode no body, header or
address) and so no pipeline that reads a mail can come near them. Two more rows show where
our own pipeline's share goes: mail-parser alone (`mailparser.parse_from_bytes`, the
library the design card names) and our whole parser (`parsers.parse`: repairs, limits,
decoded text and attachments, addresses) alone, with no database.
Usage: python bench/parse_limit.py [--count 5000]
Importable: rate(count) -> {"eager": mails/s, "compat32": ..., "default": ...,
"mail-parser": ..., "parsers.parse": ...}.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import backlog  # noqa: E402

PASSES = 3
HEADERS = ("From", "To", "Subject", "Date", "Message-ID")


def eager(raw: bytes) -> None:
    """The limit's unit of work: one mail parsed and every part and header read."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for part in msg.walk():
        if part.is_multipart():
            continue
        try:
            part.get_content()
        except (KeyError, LookupError, ValueError):  # no content manager, unknown charset
            part.get_payload(decode=True)
    for name in HEADERS:
        str(msg[name])


def lazy(policy: email.policy.Policy) -> Callable[[bytes], None]:
    def parse(raw: bytes) -> None:
        for _part in email.message_from_bytes(raw, policy=policy).walk():
            pass
    return parse


def best(mails: list[bytes], parse_one: Callable[[bytes], object], passes: int = PASSES) -> float:
    """Mails/s of the fastest of `passes` passes over the backlog."""
    seconds = []
    for _ in range(passes):
        started = time.perf_counter()
        for raw in mails:
            parse_one(raw)
        seconds.append(time.perf_counter() - started)
    return len(mails) / min(seconds)


def rate(count: int = 5000) -> dict[str, float]:
    import mailparser

    from parsers import Limits, parse

    mails = list(backlog(count))
    limits = Limits()
    return {
        "eager": best(mails, eager),
        "compat32": best(mails, lazy(email.policy.compat32)),
        "default": best(mails, lazy(email.policy.default)),
        "mail-parser": best(mails, mailparser.parse_from_bytes),
        "parsers.parse": best(mails, lambda raw: parse(raw, limits)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=5000)
    args = ap.parse_args()
    rates = rate(args.count)
    for name, mails_per_s in rates.items():
        print(f"{name:<14} {args.count} mails {mails_per_s:>9.0f} mails/s "
              f"{mails_per_s / rates['eager']:>7.1%} of eager")


if __name__ == "__main__":
    main()
