"""The service's identity reads its configuration and secrets the way the unit gives them.

The unit runs as User=ticketd/Group=ticketd: the configuration is root's and readable by
the group (0640 in a 0750 folder), the secrets are root's (0600) and reach the service
only through LoadCredential=, which systemd lays out as a folder owned by the service's
user, mode 0500, with a file per credential, mode 0400. Here an unused uid/gid stands
for ticketd (setpriv, no user is created on this machine) and runs the installed
`ticketd check-config`, as the unit's ExecStartPre= does.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.install.conftest import Installed, clean_environment, require, require_root

pytestmark = pytest.mark.slow

IMAP_PASSWORD, SMTP_PASSWORD = "imap-secret-of-the-test", "smtp-secret-of-the-test"
KEY = "identity-test-key-0123456789abcdef"
SECRETS = {"imap-password": IMAP_PASSWORD, "smtp-password": SMTP_PASSWORD, "secret": KEY}


def _unused_id(start: int = 61000) -> int:
    """A number that is neither a user's nor a group's here."""
    for number in range(start, start + 1000):
        try:
            pwd.getpwuid(number)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(number)
        except KeyError:
            return number
    raise AssertionError("no unused uid/gid")


@dataclass(frozen=True)
class Layout:
    uid: int
    gid: int
    config: Path
    secrets: Path  # root's own copies, 0600, as in /etc/ticketd/credentials
    credentials: Path  # what systemd makes of LoadCredential=


@pytest.fixture
def layout() -> Iterator[Layout]:
    require_root()
    require(shutil.which("setpriv"), "setpriv is missing (util-linux)")
    uid = gid = _unused_id()
    base = Path(tempfile.mkdtemp(prefix="ticketd-identity-"))
    base.chmod(0o755)
    etc, secrets, credentials, storage = (base / name for name in
                                          ("etc", "secrets", "credentials", "storage"))
    etc.mkdir(mode=0o750)
    os.chown(etc, 0, gid)
    secrets.mkdir(mode=0o700)
    credentials.mkdir()
    storage.mkdir(mode=0o750)
    os.chown(storage, uid, gid)
    for name, value in SECRETS.items():
        (secrets / name).write_text(value + "\n")
        (secrets / name).chmod(0o600)
        (credentials / name).write_text(value + "\n")
        os.chown(credentials / name, uid, gid)
        (credentials / name).chmod(0o400)
    os.chown(credentials, uid, gid)
    credentials.chmod(0o500)
    config = etc / "ticketd.toml"
    config.write_text(f"""
[storage]
path = "{storage}"
[imap]
host = "127.0.0.1"
tls = "none"
username = "support@casino.test"
password_file = "credential:imap-password"
[smtp]
host = "127.0.0.1"
tls = "none"
username = "support@casino.test"
password_file = "credential:smtp-password"
[security]
secret_file = "credential:secret"
""")
    os.chown(config, 0, gid)
    config.chmod(0o640)
    yield Layout(uid, gid, config, secrets, credentials)
    shutil.rmtree(base, ignore_errors=True)


def _as_service(installed: Installed, layout: Layout, *args: str, gid: int | None = None,
                **environ: str) -> subprocess.CompletedProcess[str]:
    command = ["setpriv", f"--reuid={layout.uid}", f"--regid={gid or layout.gid}",
               "--clear-groups", str(installed.ticketd), "--config", str(layout.config), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd="/",
                          env=clean_environment(**environ), timeout=120)


def test_the_service_user_reads_config_and_credentials(installed: Installed,
                                                       layout: Layout) -> None:
    done = _as_service(installed, layout, "check-config",
                       CREDENTIALS_DIRECTORY=str(layout.credentials))
    assert done.returncode == 0, done.stderr
    assert 'password_file = "credential:smtp-password"' in done.stdout
    assert done.stdout.count('password = "***"') == 2  # IMAP and SMTP: read, and masked
    assert not [secret for secret in SECRETS.values() if secret in done.stdout + done.stderr]


def test_without_the_credentials_the_error_names_each_key(installed: Installed,
                                                          layout: Layout) -> None:
    done = _as_service(installed, layout, "check-config")
    assert done.returncode == 78, done.stdout + done.stderr
    for key in ("imap.password_file", "smtp.password_file", "security.secret_file"):
        assert key in done.stderr, done.stderr
    assert "$CREDENTIALS_DIRECTORY is not set" in done.stderr
    assert "LoadCredential=smtp-password:" in done.stderr


def test_root_owned_secret_files_are_out_of_the_service_users_reach(installed: Installed,
                                                                    layout: Layout) -> None:
    # Why LoadCredential=: the same files named by path cannot be read by the service.
    done = _as_service(installed, layout, "check-config",
                       TICKETD_SMTP__PASSWORD_FILE=str(layout.secrets / "smtp-password"),
                       CREDENTIALS_DIRECTORY=str(layout.credentials))
    assert done.returncode == 78, done.stdout + done.stderr
    assert "smtp.password_file" in done.stderr and "Permission denied" in done.stderr
    assert SMTP_PASSWORD not in done.stderr


def test_outside_the_group_the_configuration_is_unreadable(installed: Installed,
                                                           layout: Layout) -> None:
    other = _unused_id(layout.gid + 1)
    done = _as_service(installed, layout, "check-config", gid=other,
                       CREDENTIALS_DIRECTORY=str(layout.credentials))
    assert done.returncode == 78, done.stdout + done.stderr
    assert str(layout.config) in done.stderr and "Permission denied" in done.stderr
