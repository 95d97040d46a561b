"""`ticketd oauth login`: the device flow run as a person would, the test approving the code;
the loopback-redirect flow of Google's installed apps with the test as the browser."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from daemon.oauth_login import browser_login
from storage.crypto import is_sealed
from storage.tokens import TokenStore
from tests.support.oauth_server import OAuthServer, client_for

pytestmark = pytest.mark.dovecot  # the mailbox fixture starts Dovecot

KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # base64 of 32 bytes, test only


def _config(tmp_path: Path, idp: OAuthServer, username: str, *, key: bool) -> Path:
    privacy = ""
    if key:
        key_file = tmp_path / "master.key"
        key_file.write_text(KEY + "\n")
        key_file.chmod(0o600)
        privacy = f'[privacy]\nkey_file = "{key_file}"\n'
    config = tmp_path / "ticketd.toml"
    config.write_text(f"""
[storage]
path = "{tmp_path / 'state'}"

[imap]
host = "127.0.0.1"
tls = "none"
username = "{username}"
auth = "oauth2"
oauth2_provider = "custom"
oauth2_client_id = "ticketd-test"
oauth2_token_url = "{idp.url}/token"
oauth2_device_url = "{idp.url}/devicecode"
{privacy}""")
    return config


def _login(config: Path, idp: OAuthServer, mailbox: str = "imap") -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETD_")}
    child = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config),
                              "oauth", "login", mailbox], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env)
    assert child.stdout is not None
    out = []
    for line in child.stdout:  # the person reads the code and enters it at the provider
        out.append(line)
        code = re.search(r"enter the code (\w+)", line)
        if code:
            idp.approve(code.group(1))
    return child.wait(timeout=60), "".join(out)


def test_device_login_stores_the_refresh_token_mode_0600(idp: OAuthServer, mailbox,
                                                         tmp_path: Path) -> None:  # noqa: ANN001
    config = _config(tmp_path, idp, mailbox.username, key=False)
    status, out = _login(config, idp)
    assert status == 0, out
    store = TokenStore.in_state_directory(tmp_path / "state", "imap")
    record = store.load()
    assert record is not None and record.refresh_token in idp.live_refresh_tokens()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert record.refresh_token not in out and record.access_token not in out
    shown = subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), "oauth",
                            "status"], capture_output=True, text=True, timeout=60)
    assert shown.stdout.startswith("imap: logged in; access token "), shown  # lives 5 s


def test_device_login_with_a_master_key_seals_the_file(idp: OAuthServer, mailbox,
                                                       tmp_path: Path) -> None:  # noqa: ANN001
    # Named by its account this time, as an operator may.
    status, out = _login(_config(tmp_path, idp, mailbox.username, key=True), idp,
                         mailbox.username)
    assert status == 0, out
    path = tmp_path / "state" / "oauth" / "imap.token"
    raw = path.read_bytes()
    assert is_sealed(raw)
    live = idp.live_refresh_tokens()
    assert not any(token.encode() in raw for token in live)


def test_browser_login_with_pkce(idp: OAuthServer, mailbox) -> None:  # noqa: ANN001
    def browser(url: str) -> None:  # the person signs in; the provider redirects back
        back = idp.authorize(url)
        threading.Thread(target=lambda: urllib.request.urlopen(back, timeout=5).read()).start()

    record = browser_login(client_for(idp, "imap", mailbox.username), browser, timeout=30)
    assert record.refresh_token in idp.live_refresh_tokens()
    assert record.access_token


def _waiting_for(lock: Path) -> bool:
    """Whether some process waits for the flock of `lock` (a "->" line of /proc/locks)."""
    inode = f":{lock.stat().st_ino} "
    return any("->" in line and inode in line
               for line in Path("/proc/locks").read_text().splitlines())


def test_login_saves_under_the_token_file_lock(idp: OAuthServer, tmp_path: Path) -> None:
    idp.username = "desk@test.example"
    config = _config(tmp_path, idp, idp.username, key=False)
    store = TokenStore.in_state_directory(tmp_path / "state", "imap")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETD_")}
    with store.locked():  # the daemon in the middle of a refresh
        child = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config),
                                  "oauth", "login", "imap"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, env=env)
        assert child.stdout is not None
        for line in child.stdout:
            code = re.search(r"enter the code (\w+)", line)
            if code:
                idp.approve(code.group(1))
                break
        lock = store.path.with_name(store.path.name + ".lock")
        while not _waiting_for(lock):
            assert child.poll() is None, "the login finished without waiting for the lock"
        assert store.load() is None  # nothing written while the lock is held
    assert child.wait(timeout=60) == 0
    record = store.load()
    assert record is not None and record.refresh_token in idp.live_refresh_tokens()
