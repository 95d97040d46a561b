"""ticketd installed from its wheel (not -e), run from a folder outside the checkout with
[smtp] configured: the commands an operator runs first all work.

An editable install reads templates and migrations from the checkout, so only a real
install shows a file the package forgot to ship.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
import zipfile
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.install.conftest import (
    PACKAGES,
    ROOT,
    SMTP_PASSWORD,
    SMTP_USER,
    Dists,
    Installed,
    LoginSink,
    clean_environment,
)

pytestmark = [pytest.mark.slow,
              # the loopback SMTP server wants AUTH without TLS, on purpose
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]


def _package_files() -> set[str]:
    """Every file of the packages in the checkout, .py or not, as a path in the package."""
    return {str(path.relative_to(ROOT)) for package in PACKAGES
            for path in (ROOT / package).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}


def test_the_wheel_ships_every_file_of_the_packages(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = set(wheel.namelist())
    missing = _package_files() - names
    assert not missing, sorted(missing)
    assert {"responders/templates/en/ack.txt.j2", "responders/templates/ru/ack.txt.j2",
            "storage/migrations/script.py.mako", "config/ticketd.example.toml"} <= names
    assert not [name for name in names if name.endswith(".pyc") or name.startswith("tests/")]


def test_the_sdist_ships_the_packages_and_the_systemd_files(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}
    missing = _package_files() - names
    assert not missing, sorted(missing)
    assert {"systemd/ticketd.service", "systemd/ticketd.sysusers", "systemd/ticketd.tmpfiles",
            "systemd/ticketd-admin", "README.md"} <= names


def test_the_venv_imports_ticketd_from_itself_not_the_checkout(installed: Installed,
                                                               tmp_path: Path) -> None:
    done = subprocess.run([str(installed.venv / "bin" / "python"), "-c",
                           "import responders, storage; print(responders.__file__)"],
                          capture_output=True, text=True, cwd=tmp_path, env=clean_environment())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(installed.venv)), done.stdout


@pytest.fixture
def configured(tmp_path: Path, db_url: str, login_sink: tuple[LoginSink, int]) -> Path:
    """A configuration with [smtp] (the login sink) and the given database."""
    storage = tmp_path / "storage"
    storage.mkdir(mode=0o750)
    storage.chmod(0o750)
    password, secret = tmp_path / "smtp-password", tmp_path / "secret"
    password.write_text(SMTP_PASSWORD + "\n")
    secret.write_text("wheel-test-key-0123456789abcdef\n")
    for path in (password, secret):
        path.chmod(0o600)
    path = tmp_path / "ticketd.toml"
    path.write_text(f"""
        [support]
        address = "support@casino.test"
        [database]
        url = "{db_url}"
        [storage]
        path = "{storage}"
        [smtp]
        host = "127.0.0.1"
        port = {login_sink[1]}
        tls = "none"
        username = "{SMTP_USER}"
        password_file = "{password}"
        [security]
        secret_file = "{secret}"
    """.replace("\n        ", "\n"))
    return path


def _ticketd(installed: Installed, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(installed.ticketd), *args], capture_output=True, text=True,
                          cwd=cwd, env=clean_environment(), timeout=120)


def test_installed_ticketd_checks_migrates_and_diagnoses(
        installed: Installed, configured: Path, db_url: str, tmp_path: Path,
        login_sink: tuple[LoginSink, int]) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    checked = _ticketd(installed, work, "--config", str(configured), "check-config")
    assert checked.returncode == 0, checked.stderr
    assert "[smtp]" in checked.stdout and SMTP_PASSWORD not in checked.stdout

    upgraded = _ticketd(installed, work, "--config", str(configured), "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    doctor = _ticketd(installed, work, "--config", str(configured), "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    backend = make_url(db_url).get_backend_name()
    assert backend in doctor.stdout and "accepts a session" in doctor.stdout
    sink = login_sink[0]
    assert sink.logins and all(ok for _, ok in sink.logins)  # the password file reached AUTH


def test_installed_demo_renders_and_delivers(installed: Installed, tmp_path: Path) -> None:
    done = _ticketd(installed, tmp_path, "demo", "--workdir", "demo")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    sent = sorted((tmp_path / "demo" / "sent").glob("*.eml"))
    assert sent, done.stdout
    # Russian and English acknowledgements: both template folders were installed.
    bodies = [_text(path) for path in sent]
    assert any(re.search("[а-яА-Я]{4}", body) for body in bodies)
    assert any(re.search(r"\bticket\b", body, re.IGNORECASE) for body in bodies)


def _text(path: Path) -> str:
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    body = message.get_body(preferencelist=("plain",))
    return body.get_content() if body is not None else ""
