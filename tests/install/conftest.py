"""The path an operator takes: ticketd built into an sdist and a wheel, the wheel installed
into a fresh venv without -e, and run from outside the checkout.

Building and installing take most of a minute, so both are done once per test session
(and again in every CI run). The venv lives in a folder every user may traverse: the
tests run its `ticketd` as an unprivileged uid too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.outbox.smtp_sink import Sink, SmtpServer, free_port

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "parsers", "storage", "responders", "daemon")
SMTP_USER, SMTP_PASSWORD = "desk", "smtp-password-of-the-test"


def require(ok: object, reason: str) -> None:
    """Skip without `ok`; fail instead under CI=true, where everything must be present."""
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root (other uids, chown, mount namespaces)")


def clean_environment(**extra: str) -> dict[str, str]:
    """The environment of an operator's shell: nothing that points into the checkout."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTHON", "TICKETD_", "VIRTUAL_ENV", "CREDENTIALS_"))}
    return env | extra


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path


@dataclass(frozen=True)
class Installed:
    venv: Path

    @property
    def ticketd(self) -> Path:
        return self.venv / "bin" / "ticketd"


@pytest.fixture(scope="session")
def shared_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ticketd-install-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def dists(shared_dir: Path) -> Dists:
    """`python -m build`: the sdist from the checkout, then the wheel from the sdist."""
    out = shared_dir / "dist"
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, env=clean_environment())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,), (wheel,) = out.glob("ticketd-*.tar.gz"), out.glob("ticketd-*.whl")
    return Dists(sdist, wheel)


@pytest.fixture(scope="session")
def installed(dists: Dists, shared_dir: Path) -> Installed:
    """A fresh venv with the wheel and its [postgresql] extra, as the README installs it."""
    venv = shared_dir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q", f"{dists.wheel}[postgresql]"]
    done = subprocess.run(pip, capture_output=True, text=True, cwd=shared_dir,
                          env=clean_environment())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    venv.chmod(0o755)
    return Installed(venv)


def unpack_sdist(dists: Dists, into: Path) -> Path:
    with tarfile.open(dists.sdist) as archive:
        archive.extractall(into, filter="data")
    (top,) = into.iterdir()
    return top


class LoginSink(Sink):
    """The sink that also demands SMTP AUTH with SMTP_USER / SMTP_PASSWORD."""

    def __init__(self) -> None:
        super().__init__()
        self.logins: list[tuple[str, bool]] = []

    def authenticate(self, server, session, envelope, mechanism, data):  # noqa: ANN001, ANN201
        ok = isinstance(data, LoginPassword) and \
            (data.login, data.password) == (SMTP_USER.encode(), SMTP_PASSWORD.encode())
        self.logins.append((mechanism, ok))
        return AuthResult(success=ok)


@pytest.fixture
def login_sink() -> Iterator[tuple[LoginSink, int]]:
    """(sink, port): an aiosmtpd server on loopback that wants a login, plain text."""
    sink = LoginSink()
    port = free_port()
    with warnings.catch_warnings():  # AUTH without TLS: on loopback, on purpose
        warnings.simplefilter("ignore", UserWarning)
        server = SmtpServer(sink, port, authenticator=sink.authenticate,
                            auth_require_tls=False, auth_required=True).start()
    yield sink, port
    server.stop()
