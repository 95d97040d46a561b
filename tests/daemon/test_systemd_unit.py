"""The unit file as systemd itself reads it: `systemd-analyze verify` and the offline
security assessment (installed by scripts/test from Debian's packages)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "ticketd.service"


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (scripts/test installs Debian's systemd)")
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart exists: point it at this checkout's ticketd.
    ticketd = Path(sys.executable).with_name("ticketd")
    copy = tmp_path / "ticketd.service"
    copy.write_text(UNIT.read_text().replace("/usr/bin/ticketd", str(ticketd)))
    return copy


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
    for line in ("Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID",
                 "Restart=on-failure", "DynamicUser=yes", "StateDirectory=ticketd",
                 "ProtectSystem=strict", "SystemCallFilter=@system-service", "CapabilityBoundingSet="):
        assert line in text, line
