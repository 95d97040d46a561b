"""The physical limit of parsing on this machine: Python's own `email` package parsing the
same backlog alone (no classification, threading or storage), mails/s per policy.

The backlog is generated first; only `email.message_from_bytes` is timed, and each message
is walked once (as any ingest must look at every part). Two more rows show where our own
pipeline's share of that limit goes: mail-parser alone (`mailparser.parse_from_bytes`, the
library the design card names) and our whole parser (`parsers.parse`: repairs, limits,
decoded text and attachments, addresses) alone, with no database.
Usage: python bench/parse_limit.py [--count 5000]
Importable: rate(count) -> {"compat32": mails/s, "default": mails/s, "mail-parser": ...,
"parsers.parse": ...}.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.corpus import backlog  # noqa: E402

POLICIES = {"compat32": email.policy.compat32, "default": email.policy.default}


def _parse_all(mails: list[bytes], policy: email.policy.Policy) -> float:
    started = time.perf_counter()
    for raw in mails:
        msg = email.message_from_bytes(raw, policy=policy)
        for _part in msg.walk():
            pass
    return time.perf_counter() - started


def _time(mails: list[bytes], parse_one) -> float:  # noqa: ANN001
    started = time.perf_counter()
    for raw in mails:
        parse_one(raw)
    return time.perf_counter() - started


def rate(count: int = 5000) -> dict[str, float]:
    import mailparser

    from parsers import Limits, parse

    mails = list(backlog(count))
    rates = {name: count / _parse_all(mails, policy) for name, policy in POLICIES.items()}
    rates["mail-parser"] = count / _time(mails, mailparser.parse_from_bytes)
    limits = Limits()
    rates["parsers.parse"] = count / _time(mails, lambda raw: parse(raw, limits))
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=5000)
    args = ap.parse_args()
    for name, mails_per_s in rate(args.count).items():
        print(f"{name:<14} {args.count} mails {mails_per_s:>9.0f} mails/s")


if __name__ == "__main__":
    main()
