from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dovecot import Account, DovecotServer, require_dovecot


@pytest.fixture(scope="session")
def dovecot(request: pytest.FixtureRequest) -> Iterator[DovecotServer]:
    """A Dovecot IMAP server on loopback for the whole session.

    Skipped when Dovecot is not installed, failed instead when CI=true. Its directory
    (with dovecot.log) is kept when a test failed.
    """
    server = DovecotServer.start_new(require_dovecot())
    yield server
    server.stop()
    if not request.session.testsfailed:
        server.remove_directory()


@pytest.fixture
def imap_account(dovecot: DovecotServer, request: pytest.FixtureRequest) -> Account:
    """A fresh account with an empty mailbox; a failing test's report names the log."""
    account = dovecot.new_account()
    request.node.add_report_section(
        "setup", "dovecot", f"account {account.username} on {account.host}:{account.port}, "
        f"TLS on {account.tls_port}; Dovecot log: {dovecot.log_path}")
    return account
