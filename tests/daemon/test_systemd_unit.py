"""The unit file as systemd itself reads it: `systemd-analyze verify` and the offline
security assessment (installed by scripts/test from Debian's packages), and its
agreement with the files it goes with: the example configuration's credentials, the
tmpfiles.d modes `ticketd doctor` checks, the venv the README installs.

tests/install/test_readme_recipe.py verifies the unit as the README's recipe installs it;
here the same file is checked quickly, with ExecStart pointed at this checkout's ticketd.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "ticketd.service"
VENV_TICKETD = "/opt/ticketd/bin/ticketd"


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (scripts/test installs Debian's systemd)")
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart exists: point it at this checkout's ticketd.
    ticketd = Path(sys.executable).with_name("ticketd")
    copy = tmp_path / "ticketd.service"
    copy.write_text(UNIT.read_text().replace(VENV_TICKETD, str(ticketd)))
    return copy


def _settings(text: str) -> list[tuple[str, str]]:
    return [(key, value) for key, _, value in
            (line.partition("=") for line in text.splitlines())
            if value and not key.startswith(("#", "["))]


def test_the_unit_passes_systemd_analyze_verify(unit: Path) -> None:
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "ticketd.service" not in done.stderr  # no warning about our unit


def test_the_unit_is_hardened_to_an_exposure_of_at_most_1_5(unit: Path) -> None:
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                          capture_output=True, text=True)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 1.5


def test_the_unit_is_type_notify_with_a_watchdog_and_reload() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify\n", "NotifyAccess=main", "WatchdogSec=",
                 "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                 "RestartPreventExitStatus=78", "StateDirectory=ticketd",
                 "ProtectSystem=strict", "SystemCallFilter=@system-service",
                 "CapabilityBoundingSet=\n", "PrivateUsers=yes", "UMask=0077"):
        assert line in text, line


def test_the_unit_runs_the_venv_ticketd_as_the_static_user() -> None:
    settings = _settings(UNIT.read_text())
    commands = [value for key, value in settings if key.startswith("Exec") and key != "ExecReload"]
    assert commands and all(value.startswith(f"{VENV_TICKETD} ") for value in commands), commands
    assert ("User", "ticketd") in settings and ("Group", "ticketd") in settings
    assert "DynamicUser" not in dict(settings)  # its uid could not be in the config's group
    sysusers = (ROOT / "systemd" / "ticketd.sysusers").read_text()
    assert re.search(r"^u ticketd ", sysusers, re.MULTILINE)


def test_every_credential_of_the_example_is_loaded_from_etc_ticketd_credentials() -> None:
    loaded = dict(value.split(":", 1) for key, value in _settings(UNIT.read_text())
                  if key == "LoadCredential")
    assert loaded == {name: f"/etc/ticketd/credentials/{name}" for name in loaded}
    example = (ROOT / "config" / "ticketd.example.toml").read_text()
    named = set(re.findall(r'^\w+_file = "credential:([\w.-]+)"', example, re.MULTILINE))
    assert named and named == set(loaded), (named, loaded)


def test_the_tmpfiles_modes_are_those_doctor_accepts() -> None:
    entries = {path: (mode, user, group) for kind, path, mode, user, group, *_ in
               (line.split() for line in (ROOT / "systemd" / "ticketd.tmpfiles").read_text()
                .splitlines() if line.strip() and not line.startswith("#"))
               if kind == "d"}
    assert entries["/var/lib/ticketd"] == ("0750", "ticketd", "ticketd")
    assert int(entries["/var/lib/ticketd"][0], 8) & 0o007 == 0  # doctor refuses "other" bits
    assert entries["/etc/ticketd"] == ("0750", "root", "ticketd")
    assert entries["/etc/ticketd/credentials"] == ("0700", "root", "root")
