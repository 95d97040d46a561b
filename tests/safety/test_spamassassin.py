"""Spam verdicts as a real SpamAssassin writes them (Debian's `spamassassin`, local tests
only, no network), behind our MTA's Received header, through the whole ingest."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from daemon.ingest import Ingestor, IngestPolicy
from parsers import parse
from parsers.spam import SpamPolicy, spam_verdict
from storage import db
from storage.blobs import BlobStore
from tests.support.mails import mail

# The GTUBE line: SpamAssassin scores any mail carrying it as spam (1000 points).
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
THEIR_HOP = b"Received: from [10.1.1.1] by mx.mail.test (Postfix) with ESMTPSA\r\n"
OUR_HOP = (b"Received: from localhost (localhost [127.0.0.1]) by mx1.casino.test (Postfix)"
           b" with ESMTP\r\n")


def require_spamassassin() -> str:
    found = shutil.which("spamassassin")
    if found:
        return found
    reason = "spamassassin not installed (apt-get install -y spamassassin)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def filtered(raw: bytes, *settings: str) -> bytes:
    """`raw` (as the sender's hop handed it over) through SpamAssassin, then re-injected into
    our MTA, which prepends its Received header: what reaches the mailbox."""
    args = [require_spamassassin(), "-L", *(f"--cf={line}" for line in settings)]
    done = subprocess.run(args, input=THEIR_HOP + raw, capture_output=True, timeout=120,
                          check=True, env={**os.environ, "HOME": str(Path.cwd())})
    return OUR_HOP + done.stdout


@pytest.fixture(scope="module")
def sa_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """SpamAssassin's outputs, made once: it takes a second or two per mail."""
    home = tmp_path_factory.mktemp("sa-home")
    cwd = Path.cwd()
    os.chdir(home)  # its user_prefs land here, not in the real home
    try:
        spam = mail(sender="spammer@mail.test", subject="Refund", body=f"Win now\n{GTUBE}\n")
        ham = mail(sender="player@mail.test", subject="Refund", body="Please refund my deposit.")
        return {"spam": filtered(spam, "report_safe 0"), "ham": filtered(ham, "report_safe 0"),
                "wrapped": filtered(spam)}
    finally:
        os.chdir(cwd)


def ingestor(db_url: str, tmp_path: Path, policy: SpamPolicy) -> Ingestor:
    sessions = db.session_factory(db.make_engine(db_url))
    return Ingestor(sessions, BlobStore(tmp_path / "state"),
                    IngestPolicy(support_addresses=frozenset({"support@casino.test"}),
                                 spam=policy))


def test_spamassassins_yes_makes_spam_and_its_no_a_ticket(
        db_url: str, tmp_path: Path, sa_output: dict[str, bytes]) -> None:
    assert b"X-Spam-Flag: YES" in sa_output["spam"]  # really SpamAssassin's verdict
    desk = ingestor(db_url, tmp_path, SpamPolicy())
    spam = desk.ingest(sa_output["spam"], "t")
    assert spam.outcome == "spam" and "yes" in spam.reason.lower()
    assert desk.ingest(sa_output["ham"], "t").outcome == "ticket"


def test_a_wrapped_report_needs_spamassassins_own_hop_trusted(
        db_url: str, tmp_path: Path, sa_output: dict[str, bytes]) -> None:
    # With report_safe 1 SpamAssassin writes a new message with its own Received header on
    # top and its verdict at the end of the header block: a second hop of ours.
    desk = ingestor(db_url, tmp_path, SpamPolicy())
    assert desk.ingest(sa_output["wrapped"], "t").outcome != "spam"
    hops = frozenset({"mx1.casino.test", socket.gethostname().lower()})
    found = spam_verdict(parse(sa_output["wrapped"]), SpamPolicy(trusted_hops=hops))
    assert found is not None and found.header == "x-spam-flag"
