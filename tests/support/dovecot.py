"""A throwaway Dovecot IMAP server for tests.

Config, state, log, certificate and Maildirs all live in one temporary directory;
no system configuration is read or changed. Dovecot listens on two free loopback
ports: plain IMAP (which offers STARTTLS) and implicit TLS, with a self-signed
certificate for 127.0.0.1/localhost. Each account has a passwd-file that Dovecot
reads on first use, so every test can add its own empty mailbox.
"""

from __future__ import annotations

import grp
import itertools
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
_APPENDUID = re.compile(rb"APPENDUID \d+ (\d+)")

# With LMTP an MTA delivers into the same Maildirs (a recipient's +detail is dropped).
_LMTP = """\
postmaster_address = postmaster@test.example
recipient_delimiter = +
service lmtp {{
  inet_listener lmtp {{
    address = {host}
    port = {lmtp_port}
  }}
}}
"""

_CONFIG = """\
protocols = {protocols}
listen = {host}
base_dir = {root}/run
state_dir = {root}/state
instance_name = ticketd-test-{port}
log_path = {root}/dovecot.log
auth_verbose = yes
auth_failure_delay = 0
ssl = yes
ssl_cert = <{root}/tls/cert.pem
ssl_key = <{root}/tls/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login{oauth2_mechanisms}
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {login_user}
mail_location = maildir:{root}/mail/%u
mail_uid = {user}
mail_gid = {group}
first_valid_uid = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd.d/%u{password_mechanisms}
}}
{oauth2_passdb}userdb {{
  driver = static
  args = uid={user} gid={group} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # No auth penalty: it is per IP, so one wrong-password test would delay every
  # later login from 127.0.0.1 by seconds.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
{lmtp}
namespace inbox {{
  inbox = yes
  separator = .
}}
"""


# Bearer tokens (XOAUTH2, OAUTHBEARER) checked at an introspection URL, as a provider's
# servers do; the password logins of the helpers stay on the passwd-file.
_OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/oauth2.conf.ext
}}
"""
_OAUTH2_CONF = """\
introspection_url = {url}
introspection_mode = post
username_attribute = username
active_attribute = active
active_value = true
"""


@dataclass(frozen=True)
class Account:
    host: str
    port: int
    tls_port: int
    username: str
    password: str
    cafile: str


class DovecotError(RuntimeError):
    """Dovecot did not do what a test needed; the message names its log."""


def find_dovecot(tool: str = "dovecot") -> str | None:
    # Debian installs dovecot and doveadm in sbin, which is not on every user's PATH.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    return shutil.which(tool, path=path)


def require_dovecot() -> str:
    """The dovecot binary; skips the test without it, or fails it when CI=true."""
    binary = find_dovecot()
    missing = [name for name, found in (("dovecot", binary), ("openssl", shutil.which("openssl")))
               if not found]
    if binary and not missing:
        return binary
    reason = f"{' and '.join(missing)} not installed (apt-get install -y dovecot-imapd openssl)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


class DovecotServer:
    """One Dovecot master process (run in the foreground) and its directory."""

    def __init__(self, binary: str, root: Path, *, lmtp: bool = False,
                 introspection_url: str | None = None) -> None:
        self.binary = binary
        self.root = root
        self.lmtp = lmtp
        self.introspection_url = introspection_url
        self.port = 0
        self.tls_port = 0
        self.lmtp_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._serial = itertools.count(1)

    @classmethod
    def start_new(cls, binary: str, *, lmtp: bool = False,
                  introspection_url: str | None = None) -> DovecotServer:
        """`introspection_url`: also take OAuth 2 bearer tokens that this URL calls active."""
        server = cls(binary, Path(tempfile.mkdtemp(prefix="ticketd-dovecot-")), lmtp=lmtp,
                     introspection_url=introspection_url)
        server.start()
        return server

    @property
    def pid(self) -> int | None:
        """The master process's id while it runs (its workers are its children)."""
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def cafile(self) -> Path:
        return self.root / "tls" / "cert.pem"

    def start(self) -> None:
        self._prepare_directory()
        for _ in range(3):  # a probed free port can be taken before Dovecot binds it
            self.port, self.tls_port, self.lmtp_port = free_ports(3)
            if self._launch():
                return
        raise self._error("Dovecot did not start")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # SIGTERM to the master pid; it stops its children
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def remove_directory(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def new_account(self, address: str | None = None) -> Account:
        """A fresh mailbox; `address` names it (as LMTP delivers to it), else a unique one."""
        username = address or f"user{next(self._serial)}-{secrets.token_hex(4)}@test.example"
        password = secrets.token_urlsafe(12)
        # One passwd-file per user: Dovecot rereads a changed passwd-file at most once a
        # second, so a user appended to a shared file may stay unknown for up to a second.
        (self.root / "passwd.d" / username).write_text(f"{username}:{{PLAIN}}{password}\n")
        return Account(HOST, self.port, self.tls_port, username, password, str(self.cafile))

    # -- looking at and changing a mailbox from the outside -----------------------------

    @contextmanager
    def client(self, account: Account) -> Iterator[IMAPClient]:
        """A logged-in plain-text connection (loopback only), logged out afterwards."""
        try:
            client = IMAPClient(account.host, account.port, ssl=False, timeout=10)
            client.login(account.username, account.password)
        except (IMAPClientError, OSError) as exc:
            raise self._error(f"cannot log in as {account.username}: {exc}") from exc
        try:
            yield client
        except (IMAPClientError, OSError) as exc:
            raise self._error(f"IMAP as {account.username} failed: {exc}") from exc
        finally:
            _logout(client)

    def append(self, account: Account, raw: bytes, folder: str = "INBOX",
               delivered_at: datetime | None = None) -> int:
        """Put a mail in the folder; `delivered_at` becomes its INTERNALDATE."""
        with self.client(account) as client:
            response = client.append(folder, raw, msg_time=delivered_at)
        match = _APPENDUID.search(response)
        if match is None:
            raise self._error(f"APPEND answered without APPENDUID: {response!r}")
        return int(match.group(1))

    def uids(self, account: Account, folder: str = "INBOX") -> list[int]:
        with self.client(account) as client:
            client.select_folder(folder, readonly=True)
            return sorted(client.search("ALL"))

    def fetch_all(self, account: Account, folder: str = "INBOX") -> list[bytes]:
        with self.client(account) as client:
            client.select_folder(folder, readonly=True)
            uids = sorted(client.search("ALL"))
            data = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
        return [data[uid][b"BODY[]"] for uid in uids]

    def flags(self, account: Account, folder: str = "INBOX") -> dict[int, set[bytes]]:
        with self.client(account) as client:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            flags = client.get_flags(uids) if uids else {}
        return {uid: set(flags[uid]) for uid in sorted(flags)}

    def add_flags(self, account: Account, uids: list[int], flags: list[str],
                  folder: str = "INBOX") -> None:
        with self.client(account) as client:
            client.select_folder(folder)
            client.add_flags(uids, flags, silent=True)

    def create_folder(self, account: Account, folder: str) -> None:
        with self.client(account) as client:
            client.create_folder(folder)

    def folder_exists(self, account: Account, folder: str) -> bool:
        with self.client(account) as client:
            return bool(client.folder_exists(folder))

    def kick(self, account: Account) -> None:
        """Drop the account's connections (the server says BYE), like a server restart."""
        doveadm = find_dovecot("doveadm") or "doveadm"
        conf = str(self.root / "dovecot.conf")
        done = subprocess.run([doveadm, "-c", conf, "kick", account.username],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise self._error(f"doveadm kick failed: {done.stderr.strip()}")

    def sessions(self, account: Account) -> int:
        """The account's open IMAP connections (after logout they are gone at once)."""
        doveadm = find_dovecot("doveadm") or "doveadm"
        conf = str(self.root / "dovecot.conf")
        done = subprocess.run([doveadm, "-c", conf, "who", "-1", account.username],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise self._error(f"doveadm who failed: {done.stderr.strip()}")
        rows = [line.split() for line in done.stdout.splitlines()[1:]]  # under a header line
        return sum(1 for row in rows if row and row[0] == account.username)

    def uidvalidity(self, account: Account, folder: str = "INBOX") -> int:
        with self.client(account) as client:
            return int(client.select_folder(folder, readonly=True)[b"UIDVALIDITY"])

    def reset_uidvalidity(self, account: Account, folder: str = "INBOX") -> int:
        """Make Dovecot give `folder` a new UIDVALIDITY while its messages stay; returns it.

        Dovecot keeps a Maildir's UIDs and UIDVALIDITY in dovecot-uidlist and its indexes
        (the mailbox list index caches them too). Without those files it rescans cur/ and
        new/ and starts a new UID space. Close connections that have the folder selected
        first: an open session would keep using the old indexes.
        """
        before = self.uidvalidity(account, folder)
        maildir = self._maildir(account, folder)
        stale = [maildir / "dovecot-uidlist", *maildir.glob("dovecot.index*"),
                 *self._maildir(account, "INBOX").glob("dovecot.list.index*")]
        for path in stale:
            path.unlink(missing_ok=True)
        after = self.uidvalidity(account, folder)
        if after == before:
            raise self._error(f"UIDVALIDITY of {folder} stayed {before} after the reset")
        return after

    # -- internals ---------------------------------------------------------------------

    def _prepare_directory(self) -> None:
        # Dovecot's unprivileged processes must reach the Maildirs and the passwd-file.
        self.root.chmod(0o755)
        for name in ("run", "state", "mail", "tls", "passwd.d"):
            (self.root / name).mkdir(exist_ok=True)
        _make_certificate(self.root / "tls")
        user, group, _ = _service_users()
        shutil.chown(self.root / "mail", user, group)

    def _launch(self) -> bool:
        conf = self.root / "dovecot.conf"
        conf.write_text(self._config(), encoding="utf-8")
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "-F", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self._process.poll() is None:
            if _greets(HOST, self.port):
                return True
            time.sleep(0.05)
        self.stop()
        return False

    def _config(self) -> str:
        user, group, login_user = _service_users()
        lmtp = _LMTP.format(host=HOST, lmtp_port=self.lmtp_port) if self.lmtp else ""
        oauth2 = {"oauth2_mechanisms": "", "password_mechanisms": "", "oauth2_passdb": ""}
        if self.introspection_url:
            (self.root / "oauth2.conf.ext").write_text(
                _OAUTH2_CONF.format(url=self.introspection_url), encoding="utf-8")
            oauth2 = {"oauth2_mechanisms": " xoauth2 oauthbearer",
                      "password_mechanisms": "\n  mechanisms = plain login",
                      "oauth2_passdb": _OAUTH2_PASSDB.format(root=self.root)}
        return _CONFIG.format(host=HOST, root=self.root, port=self.port, tls_port=self.tls_port,
                              user=user, group=group, login_user=login_user, lmtp=lmtp,
                              protocols="imap lmtp" if self.lmtp else "imap", **oauth2)

    def _maildir(self, account: Account, folder: str) -> Path:
        home = self.root / "mail" / account.username
        if folder.upper() == "INBOX":
            return home
        assert folder.isascii(), "non-ASCII folder names are stored in modified UTF-7"
        return home / f".{folder}"

    def _error(self, message: str) -> DovecotError:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-10:]
        except OSError:
            tail = []
        return DovecotError("\n".join([f"{message} (Dovecot log: {self.log_path})", *tail]))


def _service_users() -> tuple[str, str, str]:
    """(mail user, its group, login user): as root, Dovecot refuses to use root for them."""
    if os.geteuid() == 0:
        return "dovecot", "dovecot", "dovenull"
    user = pwd.getpwuid(os.geteuid()).pw_name
    return user, grp.getgrgid(os.getegid()).gr_name, user


def _make_certificate(directory: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
        check=True, capture_output=True)
    (directory / "key.pem").chmod(0o644)  # read by Dovecot's unprivileged config process


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _greets(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            return sock.recv(100).startswith(b"* OK")
    except OSError:
        return False


def _logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except (IMAPClientError, OSError):
        with suppress(OSError):
            client.shutdown()
