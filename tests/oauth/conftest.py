"""A local identity provider, and a Dovecot that takes the bearer tokens it issues."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.oauth import TokenKeeper
from storage.tokens import TokenRecord, TokenStore
from tests.support.dovecot import Account, DovecotServer, require_dovecot
from tests.support.oauth_server import OAuthServer, client_for

LIFETIME = 5.0  # seconds an access token lives


@pytest.fixture(scope="module")
def idp() -> Iterator[OAuthServer]:
    with OAuthServer("nobody@test.example", lifetime=LIFETIME) as server:
        yield server


@pytest.fixture(scope="module")
def oauth_dovecot(idp: OAuthServer, request: pytest.FixtureRequest) -> Iterator[DovecotServer]:
    server = DovecotServer.start_new(require_dovecot(),
                                     introspection_url=f"{idp.url}/introspect")
    yield server
    server.stop()
    if not request.session.testsfailed:
        server.remove_directory()


@pytest.fixture
def mailbox(idp: OAuthServer, oauth_dovecot: DovecotServer,
            request: pytest.FixtureRequest) -> Account:
    """A fresh mailbox user; the provider issues its tokens from now on."""
    username = f"desk-{secrets.token_hex(4)}@test.example"
    idp.username = username
    idp.state.down = False
    request.node.add_report_section("setup", "dovecot", f"log: {oauth_dovecot.log_path}")
    return Account("127.0.0.1", oauth_dovecot.port, oauth_dovecot.tls_port, username, "",
                   str(oauth_dovecot.cafile))


@pytest.fixture
def logged_in(idp: OAuthServer, mailbox: Account,
              tmp_path: Path) -> Callable[..., TokenKeeper]:
    """keeper(mailbox="imap", **options): a keeper whose store holds a fresh login."""

    def make(name: str = "imap", **options: object) -> TokenKeeper:
        store = TokenStore.in_state_directory(tmp_path / "state", name)
        store.save(TokenRecord(refresh_token=idp.issue_refresh_token()))
        return TokenKeeper(client_for(idp, name, mailbox.username), store, **options)

    return make
