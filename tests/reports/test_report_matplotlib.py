"""matplotlib is loaded when a chart is drawn, not when the daemon starts, and keeps its
font cache where the service can write it, without warning, when the home is not
writable (the unit's ProtectHome; the admin wrapper running as ticketd with root's HOME)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRAW = """
import logging
logging.basicConfig(level=logging.INFO)
from datetime import date
from responders import report_charts as charts
from storage.reports import Period, Report
print(len(charts.png(charts.weekly_by_category(Report(Period(date(2026, 11, 2),
                                                              date(2026, 11, 8)))))))
"""


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
                          "CACHE_DIRECTORY", "STATE_DIRECTORY", "HOME")}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("module", ["daemon.sla", "daemon.report_digest", "daemon.cli"])
def test_starting_the_daemon_does_not_import_matplotlib(module: str) -> None:
    done = python(f"import sys, {module}; "
                  "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture
def no_home(tmp_path: Path) -> str:
    """A HOME nothing can be made under, even by root: a path through a file."""
    (tmp_path / "file").write_text("")
    return str(tmp_path / "file" / "home")


def test_under_systemd_the_font_cache_lives_in_the_state_directory(
        tmp_path: Path, no_home: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    first = python(DRAW, HOME=no_home, STATE_DIRECTORY=str(state))
    assert first.returncode == 0, first.stderr
    assert "WARNING" not in first.stderr and "temporary" not in first.stderr
    assert list((state / "matplotlib").glob("fontlist-*.json"))
    again = python(DRAW, HOME=no_home, STATE_DIRECTORY=str(state))
    assert again.returncode == 0, again.stderr
    assert "generated new fontManager" in first.stderr
    assert "generated new fontManager" not in again.stderr  # the cache was kept


def test_without_a_writable_home_a_private_directory_removed_at_exit(
        tmp_path: Path, no_home: str) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = python(DRAW, HOME=no_home, TMPDIR=str(temp))
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr and "temporary" not in done.stderr
    assert list(temp.iterdir()) == []
