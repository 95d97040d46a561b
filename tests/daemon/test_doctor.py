"""`ticketd doctor` looks and changes nothing; `doctor --fix` creates what can be made; no
line shows a secret, whatever the driver's error says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.outbox.smtp_sink import Sink, SmtpServer, free_port
from tests.support.configs import write_config
from tests.support.dovecot import Account, DovecotServer

SECRET = "doctor-test-secret-0123456789abcdef"


def doctor(config: Path, *args: str) -> tuple[int, dict[str, str]]:
    """The exit status and each check's line, by check name."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKETD_")}
    done = subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), "doctor",
                           *args], capture_output=True, text=True, timeout=120,
                          env={**clean, "TICKETD_SECURITY__SECRET": SECRET})
    lines = {line[6:18].strip(): line for line in done.stdout.splitlines()}
    return done.returncode, lines


@pytest.fixture
def sink():  # noqa: ANN201
    server = SmtpServer(Sink(), free_port()).start()
    yield server
    server.stop()


@pytest.mark.dovecot
def test_doctor_creates_no_imap_folder_and_no_directory_and_fix_does(
        dovecot: DovecotServer, imap_account: Account, sqlite_url: str, tmp_path: Path,
        sink: SmtpServer) -> None:
    config = write_config(tmp_path, sqlite_url, imap_account,
                          smtp={"host": "127.0.0.1", "port": sink.port, "tls": "none"})
    state = tmp_path / "state"
    assert not state.exists()

    code, lines = doctor(config)
    assert code == 1
    assert lines["storage"].startswith("FAIL") and "'ticketd doctor --fix' creates it" in \
        lines["storage"]
    assert lines["imap"].startswith("ok") and \
        "missing: Processed, Quarantine, Junk (the daemon creates them at start" in lines["imap"]
    assert "folders INBOX, Processed, Quarantine, Junk;" in lines["imap"]
    assert not state.exists()
    for folder in ("Processed", "Quarantine", "Junk"):
        assert not dovecot.folder_exists(imap_account, folder)

    code, lines = doctor(config, "--fix")
    assert code == 0, lines
    assert lines["storage"].startswith("ok") and "created;" in lines["storage"]
    assert state.is_dir() and state.stat().st_mode & 0o777 == 0o750
    for folder in ("Processed", "Quarantine", "Junk"):
        assert dovecot.folder_exists(imap_account, folder)

    code, lines = doctor(config)  # now everything is there: plain doctor is all ok
    assert code == 0 and "missing" not in lines["imap"] and "created" not in lines["storage"]


def test_doctor_creates_no_sqlite_database(tmp_path: Path) -> None:
    database = tmp_path / "none" / "ticketd.db"
    config = write_config(tmp_path, f"sqlite:///{database}")
    code, lines = doctor(config)
    assert code == 1
    assert lines["database"].startswith("FAIL") and "run 'ticketd db upgrade'" in lines["database"]
    assert not database.exists() and not database.parent.exists()


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://desk:p%40ss%2Fw0rd@host.invalid/desk?connect_timeout=2",
    "postgresql+psycopg://desk:pa/ss:w0rd@host.invalid/desk?connect_timeout=2",
    "postgresql+psycopg://desk@host.invalid/desk?password=p%40ss%26w0rd&connect_timeout=2",
])
def test_doctor_shows_no_part_of_a_database_password(tmp_path: Path, url: str) -> None:
    config = write_config(tmp_path, url)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKETD_")}
    done = subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), "doctor"],
                          capture_output=True, text=True, timeout=120,
                          env={**clean, "TICKETD_SECURITY__SECRET": SECRET})
    assert done.returncode == 1
    [line] = [line for line in done.stdout.splitlines() if " database " in line]
    assert line.startswith("FAIL") and "host.invalid" in line  # the resolver's complaint
    for piece in ("p@ss", "w0rd", "%40", "pa/ss", "p%40"):
        assert piece not in done.stdout + done.stderr
