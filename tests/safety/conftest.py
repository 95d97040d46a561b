"""Fixtures of the safety tests: a real clamd with a database built here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clamd import ClamdServer, require_clamd


@pytest.fixture(scope="session")
def clamd(request: pytest.FixtureRequest) -> Iterator[ClamdServer]:
    server = ClamdServer.start_new(require_clamd())
    yield server
    server.stop()
    if not request.session.testsfailed:
        server.remove_directory()


@pytest.fixture(scope="session")
def small_clamd(request: pytest.FixtureRequest) -> Iterator[ClamdServer]:
    """A clamd that refuses any stream longer than 1 MiB (StreamMaxLength 1M)."""
    server = ClamdServer.start_new(require_clamd(), stream_max="1M")
    yield server
    server.stop()
    if not request.session.testsfailed:
        server.remove_directory()
