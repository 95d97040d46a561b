"""kill -9 in the middle of a retention sweep (`ticketd retention --once` as a child process,
killed at a failpoint before or after a batch's commit): the next run completes, the result
is exactly that of a sweep never interrupted, no file of a swept row is left and none of a
kept row is lost, and a third run finds nothing to do; also with encryption at rest, at two
of the failpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from storage.models import Contact, IngestRecord, OutboxMessage, Ticket
from tests.records.desk import MASTER_KEY, MASTER_KEY_LINE, RULES_TOML, Desk, build
from tests.support.configs import write_config

KILLS = [("before-commit", "raw_mail"), ("after-commit", "raw_mail"),
         ("before-commit", "closed_tickets"), ("after-commit", "closed_tickets")]
# What the killed run had committed: batches of 2 rows, closed tickets one at a time.
HALF = {("before-commit", "raw_mail"): ("raw removed", set()),
        ("after-commit", "raw_mail"): ("raw removed", {"anna", "boris"}),
        ("before-commit", "closed_tickets"): ("anonymised", set()),
        ("after-commit", "closed_tickets"): ("anonymised", {"anna"})}


def _ticketd(config: Path, *args: str, failpoint: str | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("TICKETD_") or k == "TICKETD_TEST_PG_URL"}
    env = {**clean, "TICKETD_LOGGING__LEVEL": "WARNING"}
    if failpoint:
        env["TICKETD_FAILPOINT"] = failpoint
    return subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120, env=env)


def _state(desk: Desk) -> dict[str, object]:
    """What a sweep decides, as one comparable value: rows marked and files present."""
    with desk.sessions() as session:
        removed = set(session.scalars(select(IngestRecord.raw_sha256)
                                      .where(IngestRecord.raw_removed_at.is_not(None))))
        anonymised = set(session.scalars(select(Ticket.id)
                                         .where(Ticket.anonymised_at.is_not(None))))
        cleared = set(session.scalars(select(OutboxMessage.id)
                                      .where(OutboxMessage.raw_removed_at.is_not(None))))
        addresses = set(session.scalars(select(Contact.address)))
    return {
        "raw removed": {n for n, d in desk.raw.items() if d in removed},
        "raw on disk": {n for n in desk.raw if desk.raw_on_disk(n)},
        "attachments on disk": {n for n in desk.attachments if desk.attachment_on_disk(n)},
        "anonymised": {n for n, t in desk.tickets.items() if t in anonymised},
        "sent cleared": {n for n, o in desk.sent.items() if o in cleared},
        "anna kept": "anna@players.test" in addresses,
    }


EXPECTED = {
    "raw removed": {"anna", "boris", "boris_old", "robot", "spam"},
    "raw on disk": {"dora", "carl"},
    "attachments on disk": {"anna/passport.pdf", "dora/passport.pdf", "boris/statement.pdf",
                            "carl/screen.pdf"},  # not the ignored mail's invoice
    "anonymised": {"anna", "boris_old"},
    "sent cleared": {"old"},
    "anna kept": False,
}


# Sealed, anna's passport is hers alone (dora's copy is sealed with dora's key): it goes.
EXPECTED_SEALED = {**EXPECTED, "attachments on disk": EXPECTED["attachments on disk"]
                   - {"anna/passport.pdf"}}


@pytest.mark.parametrize("when,rule,sealed", [
    *((when, rule, False) for when, rule in KILLS),
    ("before-commit", "raw_mail", True), ("after-commit", "closed_tickets", True)])
def test_a_sweep_killed_mid_batch_is_completed_by_the_next_run(
        db_url: str, tmp_path: Path, when: str, rule: str, sealed: bool) -> None:
    privacy = {}
    if sealed:
        key_file = tmp_path / "master-key"
        key_file.write_text(MASTER_KEY_LINE + "\n")
        key_file.chmod(0o600)
        privacy = {"privacy": {"key_file": str(key_file)}}
    config = write_config(tmp_path / "etc", db_url, retention=RULES_TOML, **privacy)
    desk = build(db_url, tmp_path / "etc" / "state", MASTER_KEY if sealed else None)
    expected = EXPECTED_SEALED if sealed else EXPECTED

    killed = _ticketd(config, "retention", "--once", failpoint=f"retention-{when}:{rule}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    key, committed = HALF[when, rule]
    assert _state(desk)[key] == committed  # the kill fell inside the sweep

    rerun = _ticketd(config, "retention", "--once")
    assert rerun.returncode == 0, rerun.stderr
    assert _state(desk) == expected

    again = _ticketd(config, "retention", "--once")
    assert again.returncode == 0, again.stderr
    counts = dict(item.split("=") for item in again.stdout.split())
    assert {k: v for k, v in counts.items() if not k.startswith("files_") and v != "0"} == {}
    assert _state(desk) == expected
