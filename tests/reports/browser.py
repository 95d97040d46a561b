"""A real browser engine for the HTML report: Debian's Chromium, headless, on a local file.

Skips the test without it, or fails it when CI=true (scripts/test installs it). Each run
gets a fresh profile directory, so nothing of another run (or of a person's browser) is
read; no network is needed, and the page asks for none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
          "--disable-background-networking", "--disable-component-update",
          "--disable-extensions", "--enable-logging=stderr", "--v=0")


def require_chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium is not installed (scripts/test installs it)")
    pytest.skip("chromium is not installed")


@dataclass(frozen=True)
class Rendered:
    dom: str  # the document as the engine built it
    screenshot: Path  # a PNG of the top of the page
    console: list[str]  # what the page wrote to the console (errors among it)


def render(page: Path, work: Path, size: str = "1200,2600") -> Rendered:
    """Load `page` twice, once for its DOM and once for a screenshot."""
    chromium = require_chromium()
    shot = work / "page.png"
    base = [chromium, *_FLAGS, f"--window-size={size}"]
    dom = _run([*base, f"--user-data-dir={work / 'profile-dom'}", "--dump-dom", page.as_uri()])
    pictured = _run([*base, f"--user-data-dir={work / 'profile-shot'}", f"--screenshot={shot}",
                     page.as_uri()])
    console = [line for out in (dom, pictured) for line in out.stderr.splitlines()
               if ":CONSOLE" in line]
    return Rendered(dom.stdout, shot, console)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done
