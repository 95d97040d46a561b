"""The command line as operators and MTAs use it: exit codes, JSON shape, error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.configs import write_config
from tests.support.mails import PNG, mail


def ticketd(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKETD_") or k == "TICKETD_TEST_PG_URL"}
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args], input=stdin, capture_output=True,
        timeout=120, env={**clean, **(env or {})},
    )


def test_ingest_from_stdin_stores_and_show_prints_the_documented_json(db_url: str, tmp_path: Path) -> None:
    config = str(write_config(tmp_path, db_url))
    raw = mail(attachments=(("receipt.png", "image/png", PNG),), message_id="<cli-1@mail.test>")
    done = ticketd("--config", config, "ingest", stdin=raw)
    assert done.returncode == 0, done.stderr
    assert b"ticket #10001" in done.stdout
    shown = ticketd("--config", config, "show", "10001", "--json")
    doc = json.loads(shown.stdout)
    assert {"id", "number", "subject", "status", "category", "priority", "language",
            "requester", "messages"} <= set(doc)
    [message] = doc["messages"]
    assert {"direction", "kind", "from", "message_id", "text", "attachments"} <= set(message)
    assert message["message_id"] == "cli-1@mail.test"
    assert message["attachments"] == [{
        "filename": "receipt.png", "content_type": "image/png", "size": len(PNG),
        "sha256": message["attachments"][0]["sha256"],
    }]
    listed = json.loads(ticketd("--config", config, "tickets", "--json").stdout)
    assert [t["number"] for t in listed] == [10001]


def test_ingest_twice_says_already_ingested_and_exits_0(sqlite_url: str, tmp_path: Path) -> None:
    config = str(write_config(tmp_path, sqlite_url))
    raw = mail()
    assert ticketd("--config", config, "ingest", stdin=raw).returncode == 0
    again = ticketd("--config", config, "ingest", stdin=raw)
    assert again.returncode == 0 and b"already ingested" in again.stdout


def test_ingest_exits_75_when_the_database_is_unreachable(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"
    config = str(write_config(tmp_path, url))
    done = ticketd("--config", config, "ingest", stdin=mail())
    assert done.returncode == 75, done.stderr
    assert b"database unavailable" in done.stderr


def test_a_bad_config_exits_78_naming_file_key_and_reason(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite:///x.db", database={"url": "sqlite:///x.db"})
    config.write_text(config.read_text() + "\n[imap]\nhost = \"imap.test\"\nport = 99999\n")
    done = ticketd("--config", str(config), "tickets")
    assert done.returncode == 78
    err = done.stderr.decode()
    assert str(config) in err and "imap.port" in err
    assert not (tmp_path / "x.db").exists()


def test_an_outdated_schema_is_refused_with_the_upgrade_command(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, f"sqlite:///{tmp_path}/fresh.db"))
    done = ticketd("--config", config, "tickets")
    assert done.returncode == 78
    assert b"ticketd db upgrade" in done.stderr
    assert ticketd("--config", config, "db", "upgrade").returncode == 0
    assert ticketd("--config", config, "tickets").returncode == 0


def test_check_config_masks_the_imap_password(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2-very-secret\n")
    secret.chmod(0o600)
    config = write_config(tmp_path, "sqlite:///x.db", imap={
        "host": "imap.casino.test", "username": "support@casino.test", "password_file": str(secret)})
    done = ticketd("--config", str(config), "check-config")
    assert done.returncode == 0, done.stderr
    assert b"imap.casino.test" in done.stdout and b"***" in done.stdout
    assert b"hunter2" not in done.stdout + done.stderr


def test_demo_runs_and_reports_tickets(tmp_path: Path) -> None:
    done = ticketd("demo", "--workdir", str(tmp_path / "demo"))
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "→ ticket #10001" in out and "→ follow_up #10001" in out
    assert "already stored" in out and "→ quarantined" in out and "→ ignored" in out
    assert "[self_exclusion/urgent/en]" in out and "[refund/normal/ru]" in out
    assert "→ follow_up #10002 — agent reply" in out
    assert "#10003 first_response level1 → lead@casino.example" in out
    sent = {p.name: p.read_bytes() for p in (tmp_path / "demo" / "sent").glob("*.eml")}
    to_sam = [raw for name, raw in sent.items() if name.endswith("sam@players.example.eml")]
    assert any(b"resettled" in raw and b"anna@casino.example" not in raw for raw in to_sam)
    # Anna's client put "On Wed, Casino Support wrote:" above the quoted notification: it
    # must not reach the player dangling under her answer.
    [answer] = [raw for raw in to_sam if b"resettled" in raw]
    assert b"wrote" not in answer
    assert any(name.endswith("lead@casino.example.eml") for name in sent)
    assert not (tmp_path / "demo" / "mailbox" / "new").exists() or \
        not any((tmp_path / "demo" / "mailbox" / "new").iterdir())


def test_a_piped_mail_is_received_when_piped_not_at_its_date(sqlite_url: str,
                                                              tmp_path: Path) -> None:
    """An MTA pipes a mail as it delivers it: the complaint is received then, not at the
    (plausible, two hours old) Date the sender wrote."""
    from datetime import timedelta

    from sqlalchemy import select

    from storage import db
    from storage.models import Complaint, utcnow

    config = str(write_config(tmp_path, sqlite_url))
    before = utcnow()
    raw = mail(message_id="<cli-piped@mail.test>", date=before - timedelta(hours=2))
    assert ticketd("--config", config, "ingest", stdin=raw).returncode == 0
    engine = db.make_engine(sqlite_url)
    with db.session_factory(engine)() as session:
        received = session.scalar(select(Complaint.received_at))
    engine.dispose()
    assert received is not None and received >= before
