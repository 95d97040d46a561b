"""Factories for real files in tmp_path: configuration files and secret files."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """write(name, text) -> the path of a new file holding the dedented text."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        path.chmod(0o600)  # secret files readable by others are refused
        return path

    return write


@pytest.fixture
def env() -> dict[str, str]:
    """The smallest environment that loads: only the signing secret."""
    return {"TICKETD_SECURITY__SECRET": "k-0123456789abcdef"}
