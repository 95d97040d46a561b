"""A private mail system for end-to-end tests: Postfix, OpenDKIM and mutt.

Everything lives in one temporary directory and listens on free loopback ports; the
system's own Postfix and OpenDKIM configuration is neither read nor changed.

    player's mutt, a forger ──────────────────► inbound :mx ──► LMTP ──► Dovecot
                                                 (OpenDKIM verifies,      (every user's
                                                  writes our A-R)          mailbox)
    agent's mutt, ticketd ──► submission :sub ──► content_filter back to :mx
                              (OpenDKIM signs)

The verifier finds public keys in a file (`TestPublicKeys`) instead of DNS and names itself
by the authserv-id ticketd trusts. No mail can leave: any domain but the local ones goes to
Postfix's `error` transport, and lookups use /etc/hosts only.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from tests.support.dovecot import Account, DovecotServer, free_ports

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
_DOVECOT_LIBEXEC = ("/usr/lib/dovecot", "/usr/libexec/dovecot")  # Debian's, and upstream's
_QUOTED = re.compile(r'"([^"]*)"')  # the TXT record's strings in opendkim-genkey's zone line
_TOOLS = {"postfix": "postfix", "opendkim": "opendkim", "opendkim-genkey": "opendkim-tools",
          "mutt": "mutt"}


class MtaError(RuntimeError):
    """Postfix or OpenDKIM did not do what a test needed; the message names the log."""


def find_tool(name: str) -> str | None:
    # Debian installs postfix and opendkim in sbin, which is not on every user's PATH.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    return shutil.which(name, path=path)


def require_mta() -> dict[str, str]:
    """Paths of postfix, opendkim, opendkim-genkey and mutt; skips without them (or without
    Dovecot's LMTP server), fails instead when CI=true."""
    found = {name: find_tool(name) for name in _TOOLS}
    missing = sorted({_TOOLS[name] for name, path in found.items() if path is None})
    if not any(Path(d, "lmtp").exists() for d in _DOVECOT_LIBEXEC):
        missing.append("dovecot-lmtpd")
    reason = f"{', '.join(missing)} not installed (apt-get install -y {' '.join(missing)})"
    if not missing and os.geteuid() != 0:
        reason = "not root: the postfix command that starts a master is reserved for root"
    elif not missing:
        return {name: str(path) for name, path in found.items()}
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


# -- OpenDKIM ------------------------------------------------------------------------------

# Two processes, as in life: the agents' domain signs what they submit, our MX verifies what
# comes in. (One process in "sv" mode cannot tell the two apart here: all mail comes from
# 127.0.0.1, and Postfix's cleanup(8) re-sends {daemon_name} with its own value at the
# header stage, where OpenDKIM looks at MacroList, so a per-port daemon name is lost.)
_OPENDKIM_COMMON = """\
Socket              inet:{port}@{host}
PidFile             {root}/opendkim.pid
Canonicalization    relaxed/simple
Syslog              no
"""

# RequireSafeKeys: the keys sit under the world-writable /tmp, which OpenDKIM calls unsafe.
_SIGNER = """\
Mode                s
RequireSafeKeys     no
KeyTable            {keys}/key-table
SigningTable        refile:{keys}/signing-table
"""

# Mail from 127.0.0.1 counts as internal (signed, not verified) unless InternalHosts says
# otherwise: a TEST-NET address that never connects makes every client external.
_VERIFIER = """\
Mode                v
AuthservID          {authserv_id}
InternalHosts       {keys}/no-internal-hosts
TestPublicKeys      {keys}/public-keys
AlwaysAddARHeader   yes
"""


@dataclass(frozen=True)
class DkimKeys:
    """Keys made by opendkim-genkey, the signer's tables and the verifier's public keys."""

    directory: Path
    domains: tuple[str, ...]
    selector: str = "mail"

    def write(self, genkey: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        table, signing, public = [], [], []
        for domain in self.domains:
            folder = self.directory / domain
            folder.mkdir(parents=True, exist_ok=True)
            subprocess.run([genkey, "-b", "2048", "-d", domain, "-s", self.selector,
                            "-D", str(folder)], check=True, capture_output=True)
            name = f"{self.selector}._domainkey.{domain}"
            table.append(f"{name} {domain}:{self.selector}:{folder / self.selector}.private")
            signing.append(f"*@{domain} {name}")  # refile: a wildcard, not a regex
            record = (folder / f"{self.selector}.txt").read_text()
            public.append(f"{name} {''.join(_QUOTED.findall(record))}")
        (self.directory / "key-table").write_text("\n".join(table) + "\n")
        (self.directory / "signing-table").write_text("\n".join(signing) + "\n")
        (self.directory / "public-keys").write_text("\n".join(public) + "\n")
        (self.directory / "no-internal-hosts").write_text("192.0.2.1\n")


class OpenDkim:
    """One opendkim process in the foreground: a signer or a verifier."""

    def __init__(self, binary: str, root: Path, role: str) -> None:
        self.binary = binary
        self.root = root
        self.role = role
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def signer(cls, binary: str, root: Path, keys: DkimKeys) -> OpenDkim:
        return cls(binary, root, _SIGNER.format(keys=keys.directory))

    @classmethod
    def verifier(cls, binary: str, root: Path, keys: DkimKeys, authserv_id: str) -> OpenDkim:
        return cls(binary, root, _VERIFIER.format(keys=keys.directory, authserv_id=authserv_id))

    @property
    def log_path(self) -> Path:
        return self.root / "opendkim.log"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a probed free port can be taken before OpenDKIM binds it
            [self.port] = free_ports(1)
            conf = self.root / "opendkim.conf"
            conf.write_text(_OPENDKIM_COMMON.format(port=self.port, host=HOST, root=self.root)
                            + self.role)
            with open(self.log_path, "ab") as log:
                self._process = subprocess.Popen([self.binary, "-f", "-x", str(conf)],
                                                 stdout=log, stderr=subprocess.STDOUT)
            if _wait_listening(self.port, self._process):
                return
            self.stop()
        raise MtaError(f"OpenDKIM did not start (log: {self.log_path})")

    def stop(self) -> None:
        # SIGKILL: after SIGTERM, opendkim waits out a 5 s poll of its milter loop, and it
        # keeps no state that a clean exit would save.
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None


# -- Postfix -------------------------------------------------------------------------------

_MAIN_CF = """\
compatibility_level = 3.6
config_directory = {root}
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = {owner}
setgid_group = {setgid}
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
myhostname = relay.{domain}
mydomain = {domain}
myorigin = {domain}
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
local_transport = error:no local delivery here
# Only the test's own domains; anything else bounces at once: no mail leaves this machine.
relay_domains = {domains}
relay_transport = lmtp:inet:{host}:{lmtp_port}
default_transport = error:no mail leaves the test
recipient_delimiter = +
smtp_host_lookup = native
lmtp_host_lookup = native
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
biff = no
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 100
in_flow_delay = 0
minimal_backoff_time = 2s
maximal_backoff_time = 4s
queue_run_delay = 2s
milter_default_action = tempfail
milter_protocol = 6
"""

# Services as in Debian's master.cf, without chroot, plus two listeners on loopback ports.
_MASTER_CF = """\
{host}:{mx_port} inet n - n - - smtpd
  -o myhostname=mx.{domain}
  -o smtpd_milters=inet:{host}:{verifier_port}
{host}:{sub_port} inet n - n - - smtpd
  -o smtpd_milters=inet:{host}:{signer_port}
  -o content_filter=smtp:[{host}]:{mx_port}
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
lmtp      unix - - n - - lmtp
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class Postfix:
    """A Postfix master in the foreground with its own config, queue and data directories.

    The master runs as root (only root may start one); its daemons run as Debian's
    unprivileged `postfix` user, which must be able to enter the directory.
    """

    def __init__(self, tools: dict[str, str], root: Path, domains: Sequence[str],
                 lmtp_port: int, signer_port: int, verifier_port: int) -> None:
        self.tools = tools
        self.root = root
        self.domains = list(domains)
        self.lmtp_port = lmtp_port
        self.signer_port = signer_port
        self.verifier_port = verifier_port
        self.mx_port = 0
        self.submission_port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "postfix.log"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a probed free port can be taken before Postfix binds it
            self.mx_port, self.submission_port = free_ports(2)
            self._write_config()
            with open(self.root / "master.out", "ab") as out:
                self._process = subprocess.Popen(
                    [self.tools["postfix"], "-c", str(self.root), "start-fg"],
                    stdout=out, stderr=subprocess.STDOUT)
            if (_wait_listening(self.mx_port, self._process)
                    and _wait_listening(self.submission_port, self._process)):
                return
            self.stop()
        raise MtaError(self.explain("Postfix did not start"))

    def stop(self) -> None:
        if self._process is None:
            return
        subprocess.run([self.tools["postfix"], "-c", str(self.root), "stop"],
                       capture_output=True)
        _stop(self._process)
        self._process = None

    def explain(self, message: str) -> str:
        tail = []
        for path in (self.root / "master.out", self.log_path):
            try:
                tail += path.read_text(errors="replace").splitlines()[-10:]
            except OSError:
                pass
        return "\n".join([f"{message} (Postfix log: {self.log_path})", *tail])

    def _write_config(self) -> None:
        owner, setgid = "postfix", "postdrop"  # the users Debian's package creates
        values = dict(root=self.root, host=HOST, domain=self.domains[0],
                      domains=", ".join(self.domains), lmtp_port=self.lmtp_port,
                      signer_port=self.signer_port, verifier_port=self.verifier_port,
                      mx_port=self.mx_port, sub_port=self.submission_port, owner=owner,
                      setgid=setgid)
        (self.root / "main.cf").write_text(_MAIN_CF.format(**values))
        (self.root / "master.cf").write_text(_MASTER_CF.format(**values))
        for name in ("queue", "data"):
            (self.root / name).mkdir(exist_ok=True)
        shutil.chown(self.root / "data", owner)
        self.root.chmod(0o755)  # Postfix's unprivileged daemons read main.cf


# -- mutt ----------------------------------------------------------------------------------

_MUTTRC = """\
set from = "{address}"
set realname = "{name}"
set use_from = yes
set envelope_from = yes
set hostname = "{domain}"
set smtp_url = "smtp://{host}:{port}/"
set ssl_starttls = no
set ssl_force_tls = no
set copy = no
set record = ""
set folder = "{home}/Mail"
set spoolfile = "{home}/Mail"
set mbox_type = Maildir
set charset = "utf-8"
set send_charset = "us-ascii:utf-8"
set edit_headers = no
"""


@dataclass(frozen=True)
class Mutt:
    """mutt in batch mode as one person, sending through one Postfix port."""

    binary: str
    home: Path
    address: str
    name: str
    port: int

    @classmethod
    def configure(cls, binary: str, home: Path, address: str, name: str, port: int) -> Mutt:
        home.mkdir(parents=True, exist_ok=True)
        (home / "Mail").mkdir(exist_ok=True)
        (home / "muttrc").write_text(_MUTTRC.format(
            address=address, name=name, domain=address.rsplit("@", 1)[1], host=HOST,
            port=port, home=home))
        return cls(binary, home, address, name, port)

    def send(self, to: str, subject: str, body: str, *, attachments: Sequence[Path] = (),
             in_reply_to: str | None = None, references: str | None = None) -> None:
        """Write and send one mail; a reply carries In-Reply-To and References via a draft."""
        command = [self.binary, "-n", "-F", str(self.home / "muttrc")]
        headers = [f"To: {to}", f"Subject: {subject}"]
        if in_reply_to:
            headers.append(f"In-Reply-To: {in_reply_to}")
            headers.append(f"References: {references or in_reply_to}")
        draft = self.home / f"draft-{time.monotonic_ns()}.txt"
        draft.write_text("\n".join(headers) + "\n\n" + body)
        command += ["-H", str(draft)]
        for attachment in attachments:
            command += ["-a", str(attachment)]
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env={**os.environ, "HOME": str(self.home)}, timeout=30)
        if done.returncode != 0:
            raise MtaError(f"mutt as {self.address} failed ({done.returncode}): "
                           f"{done.stderr.strip() or done.stdout.strip()}")


# -- helpers -------------------------------------------------------------------------------




def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def new_root(prefix: str) -> Path:
    """A temporary directory that Postfix's unprivileged mail_owner may enter."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


# -- the whole system ----------------------------------------------------------------------


class MailSystem:
    """Dovecot (IMAP + LMTP), a DKIM signer and verifier, and Postfix between them."""

    def __init__(self, tools: dict[str, str], dovecot_binary: str, domains: Sequence[str],
                 signed_domains: Sequence[str], authserv_id: str) -> None:
        self.tools = tools
        self.root = new_root("ticketd-mta-")
        self.dovecot = DovecotServer(dovecot_binary, self.root / "dovecot", lmtp=True)
        self.keys = DkimKeys(self.root / "dkim-keys", tuple(signed_domains))
        self.signer = OpenDkim.signer(tools["opendkim"], self.root / "dkim-signer", self.keys)
        self.verifier = OpenDkim.verifier(tools["opendkim"], self.root / "dkim-verifier",
                                          self.keys, authserv_id)
        self.domains = list(domains)
        self.postfix: Postfix | None = None

    def start(self) -> MailSystem:
        self.dovecot.root.mkdir()
        self.dovecot.start()
        self.keys.write(self.tools["opendkim-genkey"])
        self.signer.start()
        self.verifier.start()
        self.postfix = Postfix(self.tools, self.root / "postfix", self.domains,
                               self.dovecot.lmtp_port, self.signer.port, self.verifier.port)
        self.postfix.start()
        return self

    def stop(self) -> None:
        if self.postfix is not None:
            self.postfix.stop()
        self.verifier.stop()
        self.signer.stop()
        self.dovecot.stop()

    def remove_directory(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def mailbox(self, address: str) -> Account:
        """An empty mailbox that Postfix delivers `address` (and its +details) into."""
        return self.dovecot.new_account(address)

    def mutt(self, address: str, name: str, *, submission: bool) -> Mutt:
        """A person's mutt: through the signing submission port, or straight to our MX."""
        assert self.postfix is not None
        port = self.postfix.submission_port if submission else self.postfix.mx_port
        home = self.root / "mutt" / f"{address}-{'submission' if submission else 'mx'}"
        return Mutt.configure(self.tools["mutt"], home, address, name, port)

    def messages(self, account: Account, folder: str = "INBOX") -> list[EmailMessage]:
        return [email.message_from_bytes(raw, policy=default)  # type: ignore[misc]
                for raw in self.dovecot.fetch_all(account, folder)]

    def wait_for_mail(self, account: Account, wanted: Callable[[EmailMessage], bool],
                      what: str, timeout: float = 30.0) -> EmailMessage:
        """The first message in the mailbox that is `wanted`, or an error naming the logs."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(account)
            match = next((m for m in found if wanted(m)), None)
            if match is not None:
                return match
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert self.postfix is not None
        subjects = [str(m["Subject"]) for m in found]
        raise MtaError(self.postfix.explain(
            f"{what}: not in {account.username}'s mailbox within {timeout} s (it holds "
            f"{subjects}); Dovecot log: {self.dovecot.log_path}"))

    def describe(self) -> str:
        """Where each part listens and logs, for a failing test's report."""
        assert self.postfix is not None
        return (f"Postfix inbound 127.0.0.1:{self.postfix.mx_port}, submission "
                f":{self.postfix.submission_port}, log {self.postfix.log_path}; Dovecot IMAP "
                f":{self.dovecot.port}, LMTP :{self.dovecot.lmtp_port}, log "
                f"{self.dovecot.log_path}; OpenDKIM signer :{self.signer.port}, verifier "
                f":{self.verifier.port} (directory {self.root})")
