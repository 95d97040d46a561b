"""The command line of records: `ticketd privacy hold/release/holds`, `ticketd events verify`
and `ticketd retention --once`, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from daemon.ingest import Ingestor
from daemon.retention import LEDGER_PRUNE_LOCK
from storage import db
from storage import loops as loop_ledger
from storage.blobs import BlobStore
from storage.locks import try_lock_for_transaction
from storage.models import AutoMail, Event, IngestRecord, LegalHold, utcnow
from tests.records.desk import POLICY, RULES_TOML, build
from tests.support.configs import write_config
from tests.support.mails import mail


def _ticketd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("TICKETD_") or k == "TICKETD_TEST_PG_URL"}
    return subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**clean, "TICKETD_LOGGING__LEVEL": "WARNING"})


def _desk(db_url: str, tmp_path: Path) -> tuple[Path, Ingestor]:
    config = write_config(tmp_path / "etc", db_url)
    ingestor = Ingestor(db.session_factory(db.make_engine(db_url)),
                        BlobStore(tmp_path / "etc" / "state", fsync=False), POLICY)
    for who in ("anna", "boris"):
        assert ingestor.ingest(mail(f"{who} <{who}@players.test>"), "test").outcome == "ticket"
    return config, ingestor


def test_holds_are_placed_listed_and_released_each_as_an_event(db_url: str,
                                                                tmp_path: Path) -> None:
    config, ingestor = _desk(db_url, tmp_path)
    placed = _ticketd(config, "privacy", "hold", "#10001", "--reason", "regulator asked",
                      "--by", "mlro@casino.test")
    assert placed.returncode == 0, placed.stderr
    assert placed.stdout.strip() == "hold 1 placed on ticket #10001"
    on_contact = _ticketd(config, "privacy", "hold", "Boris@players.test", "--reason", "AML")
    assert on_contact.returncode == 0, on_contact.stderr
    listed = json.loads(_ticketd(config, "privacy", "holds", "--json").stdout)
    assert [(h["ticket"], h["contact"], h["reason"]) for h in listed] == [
        (10001, None, "regulator asked"), (None, "boris@players.test", "AML")]
    assert listed[0]["placed_by"] == "mlro@casino.test" and listed[1]["placed_by"]

    released = _ticketd(config, "privacy", "release", "10001", "--by", "dpo@casino.test")
    assert released.returncode == 0 and "1 hold(s) on ticket #10001 released" in released.stdout
    again = _ticketd(config, "privacy", "release", "10001")
    assert again.returncode == 1 and "no active hold on ticket #10001" in again.stderr
    assert [h["contact"] for h in json.loads(
        _ticketd(config, "privacy", "holds", "--json").stdout)] == ["boris@players.test"]
    with ingestor.sessions() as session:
        events = session.execute(select(Event.kind, Event.actor, Event.data)
                                 .where(Event.kind.like("legal_hold_%")).order_by(Event.id)).all()
        released_by = session.scalar(select(LegalHold.released_by).where(LegalHold.id == 1))
    assert [(k, a) for k, a, _ in events] == [
        ("legal_hold_placed", "mlro@casino.test"), ("legal_hold_placed", listed[1]["placed_by"]),
        ("legal_hold_released", "dpo@casino.test")]
    assert "boris" not in json.dumps([d for _, _, d in events])  # the trail names ids only
    assert released_by == "dpo@casino.test"


def test_a_hold_on_what_does_not_exist_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    config, _ = _desk(sqlite_url, tmp_path)
    nobody = _ticketd(config, "privacy", "hold", "nobody@players.test", "--reason", "x")
    assert nobody.returncode == 1 and "no contact with the address" in nobody.stderr
    no_ticket = _ticketd(config, "privacy", "hold", "99999", "--reason", "x")
    assert no_ticket.returncode == 1 and "no ticket 99999" in no_ticket.stderr
    no_reason = _ticketd(config, "privacy", "hold", "10001")
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr


def test_events_verify_passes_then_names_an_edited_row(db_url: str, tmp_path: Path) -> None:
    config, ingestor = _desk(db_url, tmp_path)
    ok = _ticketd(config, "events", "verify")
    assert ok.returncode == 0, ok.stderr
    # Two tickets: each "created" and its "complaint_opened".
    assert ok.stdout.startswith("ok: 4 events chained, head place 4 hash ")
    with ingestor.sessions.begin() as session:
        first = session.scalar(select(Event.id).order_by(Event.id))
        session.execute(text("UPDATE events SET actor = 'someone@else.test' WHERE id = :i"),
                        {"i": first})
    broken = _ticketd(config, "events", "verify")
    assert broken.returncode == 1
    assert broken.stdout.startswith(f"BROKEN at event {first} (chain place 1): edited")
    listing = _ticketd(config, "events", "--kind", "created")  # the listing is as it was
    assert listing.returncode == 0 and listing.stdout.count(" created ") == 2


def test_retention_ahead_of_the_clock_is_a_dry_run_unless_applied(db_url: str,
                                                                   tmp_path: Path) -> None:
    config = write_config(tmp_path / "etc", db_url, retention=RULES_TOML)
    desk = build(db_url, tmp_path / "etc" / "state")
    ahead = (desk.now + timedelta(days=1)).isoformat()
    dry = _ticketd(config, "retention", "--once", "--now", ahead)
    assert dry.returncode == 0, dry.stderr
    assert "raw_mail=3 " in dry.stdout and "(dry run" in dry.stdout
    with desk.sessions() as session:
        assert session.scalar(select(IngestRecord.id)
                              .where(IngestRecord.raw_removed_at.is_not(None))) is None
    applied = _ticketd(config, "retention", "--once", "--now", ahead, "--apply")
    assert applied.returncode == 0 and "raw_mail=3 " in applied.stdout
    assert "dry run" not in applied.stdout
    assert not desk.raw_on_disk("anna") and desk.raw_on_disk("dora")
    misuse = _ticketd(config, "retention", "--now", ahead)
    assert misuse.returncode == 2 and "--once" in misuse.stderr


def _ledger(db_url: str, *ages: timedelta) -> sessionmaker[Session]:
    """The loop ledger with one row per age (an acknowledgement sent that long ago)."""
    sessions = db.session_factory(db.make_engine(db_url))
    with sessions.begin() as session:
        for n, age in enumerate(ages):
            loop_ledger.record(session, None, [f"p{n}@players.test"], "ack", None,
                               utcnow() - age)
    return sessions


def _ledger_addresses(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return sorted(session.scalars(select(AutoMail.address)))


def test_retention_once_prunes_the_loop_ledger(db_url: str, tmp_path: Path) -> None:
    """Rows no loop window reaches (a day by default) go, as the daemon's records task
    removes them; a dry run ahead of the clock counts them and removes none."""
    config = write_config(tmp_path / "etc", db_url)
    sessions = _ledger(db_url, timedelta(days=3), timedelta(days=2), timedelta(hours=1))
    ahead = (utcnow() + timedelta(days=1)).isoformat()
    dry = _ticketd(config, "retention", "--once", "--now", ahead)
    assert dry.returncode == 0, dry.stderr
    assert " loop_ledger=3 " in dry.stdout and "(dry run" in dry.stdout
    assert len(_ledger_addresses(sessions)) == 3
    # Applied ahead of the clock, the sweep prunes the ledger as of now: the hour-old row
    # still counts toward the live loop limits.
    done = _ticketd(config, "retention", "--once", "--now", ahead, "--apply")
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(" loop_ledger=2")
    assert _ledger_addresses(sessions) == ["p2@players.test"]  # the hour-old row is still counted


def test_retention_once_leaves_the_ledger_to_a_daemon_pruning_it(pg_url: str,
                                                                 tmp_path: Path) -> None:
    """One prune at a time on PostgreSQL: while another holds the prune lock (a daemon's
    records task), the command skips the ledger and says so."""
    config = write_config(tmp_path / "etc", pg_url)
    sessions = _ledger(pg_url, timedelta(days=2))
    with sessions.begin() as holder:
        assert try_lock_for_transaction(holder, LEDGER_PRUNE_LOCK)
        busy = _ticketd(config, "retention", "--once")
        assert busy.returncode == 0, busy.stderr
        assert busy.stdout.rstrip().endswith(
            " loop_ledger=skipped (another process is pruning it)")
    assert _ledger_addresses(sessions) == ["p0@players.test"]
    done = _ticketd(config, "retention", "--once")
    assert done.stdout.rstrip().endswith(" loop_ledger=1") and _ledger_addresses(sessions) == []
