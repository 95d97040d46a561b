"""The README's production recipe ("Running it under systemd"), run literally.

The shell blocks of that section are taken from README.md and run, in order, by bash as
root in a throwaway copy of this machine's root: a mount namespace of their own
(`unshare --mount --propagation private`) with an overlay over / whose upper layer is a
tmpfs, entered with chroot. useradd, /etc, /opt, /usr/local and /var/lib change only in
the copy, which is gone when the namespace ends.

Only lines ending in `# live` are left out: they need the booted machine's running
services (systemctl and journalctl talk to systemd as PID 1; creating the PostgreSQL
role talks to the server), which a test has not. The operator's one manual step, editing
/etc/ticketd/ticketd.toml after the example is installed, is done here by writing the
file in place (owner and mode stay the recipe's): the servers are a Dovecot and an SMTP
sink on loopback, the secrets the ones the recipe put in /etc/ticketd/credentials.
The sdist is the checkout the recipe runs in, so it must carry what the recipe uses.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.install.conftest import (
    ROOT,
    SMTP_PASSWORD,
    SMTP_USER,
    Dists,
    LoginSink,
    require,
    require_root,
)
from tests.support.dovecot import Account

pytestmark = [pytest.mark.slow, pytest.mark.dovecot,
              # the loopback SMTP server wants AUTH without TLS, on purpose
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]

SECTION = "## Running it under systemd"
LIVE = re.compile(r"\s#\s*live\b")
# What may need the booted machine: nothing else is allowed to carry the marker.
LIVE_COMMANDS = ("systemctl ", "journalctl ", "apt-get install -y postgresql",
                 "runuser -u postgres -- ")
CONFIG_INSTALLED = "/etc/ticketd/ticketd.toml\n"
UNIT = "/etc/systemd/system/ticketd.service"


def recipe_blocks(readme: str) -> list[str]:
    section = readme[readme.index(SECTION):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    return re.findall(r"^```sh\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)


def runnable(block: str) -> str:
    return "".join(line for line in block.splitlines(keepends=True) if not LIVE.search(line))


def test_only_lines_that_need_the_booted_machine_are_marked_live() -> None:
    lines = [line for block in recipe_blocks((ROOT / "README.md").read_text())
             for line in block.splitlines()]
    live = [line for line in lines if LIVE.search(line)]
    assert live and all(line.startswith(LIVE_COMMANDS) for line in live), live
    unmarked = [line for line in lines if line.startswith(("systemctl", "journalctl"))
                and not LIVE.search(line)]
    assert not unmarked, unmarked


OUTER = r"""
set -eu
top=$1 out=$2 sdist=$3
mount -t tmpfs tmpfs "$top"
mkdir "$top/upper" "$top/work" "$top/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$top/upper,workdir=$top/work" "$top/root"
root=$top/root
for dir in dev proc sys; do mount --rbind "/$dir" "$root/$dir"; done
for dir in run tmp; do mount -t tmpfs tmpfs "$root/$dir"; done
chmod 1777 "$root/tmp"
mkdir -p "$root/root/src"
tar -xzf "$sdist" -C "$root/root/src" --strip-components=1
cp "$out/recipe.sh" "$out/environment" "$root/root/"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
set +e
in_root /bin/bash -c 'set -a && . /root/environment && set +a && cd /root/src &&
                      exec bash -x -e -o pipefail /root/recipe.sh' >"$out/recipe.log" 2>&1
echo $? >"$out/recipe.rc"
in_root stat -c '%n %a %U %G' /etc/ticketd /etc/ticketd/ticketd.toml \
    /etc/ticketd/credentials /etc/ticketd/credentials/imap-password \
    /etc/ticketd/credentials/smtp-password /etc/ticketd/credentials/secret \
    /etc/ticketd/credentials/master-key \
    /var/lib/ticketd /var/lib/ticketd/ticketd.db /usr/local/sbin/ticketd >"$out/modes" 2>&1
in_root systemd-analyze verify {unit} >"$out/verify" 2>&1
echo $? >"$out/verify.rc"
in_root systemd-analyze security --offline=true {unit} >"$out/security" 2>&1
in_root getent passwd ticketd >"$out/passwd" 2>&1
# The install stands alone: without the checkout it came from, the desk still works.
rm -rf "$root/root/src"
in_root /usr/local/sbin/ticketd doctor >"$out/doctor-alone" 2>&1
echo $? >"$out/doctor-alone.rc"
ls -A "$root/tmp" >"$out/tmp-left" 2>&1
exit 0
""".replace("{unit}", UNIT)


def operators_config(account: Account, smtp_port: int) -> str:
    """The edit of step 3, as a shell step that rewrites the file in place."""
    return f"""cat >/etc/ticketd/ticketd.toml <<'TOML'
[support]
address = "support@casino.test"
name = "Casino Support"
[imap]
host = "127.0.0.1"
port = {account.port}
tls = "none"
username = "{account.username}"
password_file = "credential:imap-password"
[smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
username = "{SMTP_USER}"
password_file = "credential:smtp-password"
[security]
secret_file = "credential:secret"
[privacy]
key_file = "credential:master-key"
TOML
"""


@dataclass(frozen=True)
class Result:
    out: Path

    def text(self, name: str) -> str:
        return (self.out / name).read_text()


@pytest.fixture
def recipe_run(dists: Dists, imap_account: Account,
               login_sink: tuple[LoginSink, int]) -> Iterator[Result]:
    require_root()
    for tool in ("unshare", "chroot", "setpriv", "systemd-analyze", "systemd-sysusers",
                 "systemd-tmpfiles"):
        require(shutil.which(tool), f"{tool} is missing (scripts/test installs it)")
    blocks = recipe_blocks((ROOT / "README.md").read_text())
    script = []
    for block in blocks:
        script.append(runnable(block))
        if CONFIG_INSTALLED in block:  # the operator edits the example just installed
            script.append(operators_config(imap_account, login_sink[1]))
    assert sum(CONFIG_INSTALLED in block for block in blocks) == 1
    base = Path(tempfile.mkdtemp(prefix="ticketd-recipe-"))
    out, top = base / "out", base / "layers"
    out.mkdir()
    top.mkdir()
    (out / "recipe.sh").write_text("".join(script))
    environment = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb",
                   "IMAP_PASSWORD": imap_account.password, "SMTP_PASSWORD": SMTP_PASSWORD}
    # The package index this machine is allowed to use, as its pip configuration says.
    environment |= {key: value for key, value in os.environ.items() if key.startswith("PIP_")}
    (out / "environment").write_text("".join(f"{key}={shlex.quote(value)}\n"
                                             for key, value in environment.items()))
    env = {"PATH": os.environ["PATH"]}
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                           OUTER, "outer", str(top), str(out), str(dists.sdist)],
                          capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    yield Result(out)
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.timeout(1500)
def test_the_recipe_runs_and_leaves_a_verified_unit_with_the_modes_doctor_wants(
        recipe_run: Result, imap_account: Account, login_sink: tuple[LoginSink, int]) -> None:
    log = recipe_run.text("recipe.log")
    assert recipe_run.text("recipe.rc").strip() == "0", log[-6000:]
    # check-config, db upgrade, doctor and a listing ran as the service's user and passed.
    assert "password_file = \"credential:imap-password\"" in log
    doctor = [line for line in log.splitlines() if re.match(r"(ok  |FAIL)  ", line)]
    # six checks, encryption at rest among them: on, with the master key the recipe made
    assert len(doctor) == 6 and all(line.startswith("ok") for line in doctor), doctor
    assert any(line.startswith("ok  ") and "encryption" in line and "on:" in line
               for line in doctor), doctor
    assert login_sink[0].logins and all(ok for _, ok in login_sink[0].logins)
    assert imap_account.password not in log and SMTP_PASSWORD not in log

    modes = dict(line.split(" ", 1) for line in recipe_run.text("modes").splitlines())
    assert modes == {
        "/etc/ticketd": "750 root ticketd",
        "/etc/ticketd/ticketd.toml": "640 root ticketd",
        "/etc/ticketd/credentials": "700 root root",
        "/etc/ticketd/credentials/imap-password": "600 root root",
        "/etc/ticketd/credentials/smtp-password": "600 root root",
        "/etc/ticketd/credentials/secret": "600 root root",
        "/etc/ticketd/credentials/master-key": "600 root root",
        "/var/lib/ticketd": "750 ticketd ticketd",
        "/var/lib/ticketd/ticketd.db": "600 ticketd ticketd",
        "/usr/local/sbin/ticketd": "755 root root",
    }, recipe_run.text("modes")
    assert recipe_run.text("passwd").startswith("ticketd:")
    alone = recipe_run.text("doctor-alone")
    assert recipe_run.text("doctor-alone.rc").strip() == "0", alone
    assert alone.count("ok  ") == 6, alone
    assert recipe_run.text("tmp-left").strip() == ""  # the CLI's credential copies are gone

    verify = recipe_run.text("verify")
    assert recipe_run.text("verify.rc").strip() == "0", verify
    assert "ticketd.service" not in verify, verify
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d)", recipe_run.text("security"))
    assert score and float(score.group(1)) <= 1.5, recipe_run.text("security")
    print(f"systemd-analyze security --offline=true on the installed unit: {score.group(1)}")
