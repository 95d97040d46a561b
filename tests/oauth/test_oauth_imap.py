"""IMAP with OAuth 2 against a real Dovecot whose oauth2 passdb asks the local provider."""

from __future__ import annotations

import imaplib
import stat

import pytest

from daemon.imap import ImapSource
from tests.support.dovecot import Account, DovecotServer
from tests.support.oauth_server import Clock, OAuthServer


def source(account: Account, keeper, mechanism: str = "xoauth2") -> ImapSource:  # noqa: ANN001
    return ImapSource(host=account.host, port=account.port, tls="none",
                      username=account.username, oauth2_tokens=keeper,
                      oauth2_mechanism=mechanism, timeout=10)


@pytest.mark.dovecot
@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_logs_in_with_a_token_refreshed_from_the_stored_login(
        mechanism: str, idp: OAuthServer, mailbox: Account, oauth_dovecot: DovecotServer,
        logged_in) -> None:  # noqa: ANN001
    imap = source(mailbox, logged_in(), mechanism)
    imap.connect()
    try:
        assert imap.uidvalidity > 0
    finally:
        imap.close()
    log = oauth_dovecot.log_path.read_text(errors="replace")
    assert f"method={mechanism.upper()}" in log
    assert f"user=<{mailbox.username}>" in log


@pytest.mark.dovecot
def test_refreshes_before_expiry_and_keeps_the_rotated_refresh_token(
        idp: OAuthServer, mailbox: Account, logged_in) -> None:  # noqa: ANN001
    clock = Clock()
    keeper = logged_in(clock=clock)
    first = keeper.access_token()
    record = keeper.store.load()
    assert keeper.access_token() == first  # fresh enough: no second refresh
    clock.now = record.expires_at - 1  # inside the margin, before expiry
    second = keeper.access_token()
    assert second != first
    stored = keeper.store.load()
    # The provider rotated the refresh token: the file holds the live one, mode 0600.
    assert stored.refresh_token != record.refresh_token
    live = idp.live_refresh_tokens()
    assert stored.refresh_token in live and record.refresh_token not in live
    assert stat.S_IMODE(keeper.store.path.stat().st_mode) == 0o600
    imap = source(mailbox, keeper)
    imap.connect()
    imap.close()
    assert idp.state.inactive_introspections == 0


@pytest.mark.dovecot
def test_a_refused_token_is_refreshed_at_once_and_the_login_goes_on(
        idp: OAuthServer, mailbox: Account, logged_in) -> None:  # noqa: ANN001
    keeper = logged_in()
    keeper.access_token()
    idp.expire_access_tokens()  # the provider cut the token short
    refused_before = idp.state.inactive_introspections
    imap = source(mailbox, keeper)
    imap.connect()
    imap.close()
    assert idp.state.inactive_introspections == refused_before + 1  # refused once, then in


@pytest.mark.dovecot
def test_a_session_dropped_mid_idle_logs_in_again_with_a_fresh_token(
        idp: OAuthServer, mailbox: Account, oauth_dovecot: DovecotServer,
        logged_in) -> None:  # noqa: ANN001
    keeper = logged_in()
    imap = source(mailbox, keeper)
    imap.connect()
    # Dovecot checks a token at login only: the provider's side of "the token expired" is
    # imitated by refusing the token and kicking the session (the server says BYE).
    idp.expire_access_tokens()
    oauth_dovecot.kick(mailbox)
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        imap.wait(10)
    refused_before = idp.state.inactive_introspections
    imap.connect()
    try:
        assert imap.uidvalidity > 0
    finally:
        imap.close()
    # The BYE made the keeper refresh: the expired token was not tried first.
    assert idp.state.inactive_introspections == refused_before


def test_two_processes_sharing_the_login_never_spend_a_rotated_token(
        idp: OAuthServer, mailbox: Account, logged_in) -> None:  # noqa: ANN001
    from daemon.oauth import TokenKeeper

    daemon = logged_in()
    daemon.access_token()  # the daemon holds a token and the refresh token it rotated to
    doctor = TokenKeeper(daemon.client, daemon.store)  # `ticketd doctor` meanwhile
    doctor.access_token()  # takes the daemon's token from the file: no refresh
    daemon.invalidate()  # the server refused the daemon's token: refresh at once
    daemon.access_token()
    doctor.invalidate()
    doctor.access_token()  # its in-memory refresh token is stale; the file's is live
    assert idp.state.refused_refreshes == 0
    assert daemon.store.load().refresh_token in idp.live_refresh_tokens()
