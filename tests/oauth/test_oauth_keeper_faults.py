"""The keeper when things around it break: a token endpoint that never answers, a disk that
refuses the rotated refresh token, a database that refuses the report, a login made while
the daemon runs. None of these needs a mail server: only the local identity provider."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from daemon import metrics  # noqa: F401 - registers the metrics read below
from daemon.oauth import (
    OAuthClient,
    OAuthProblem,
    RefreshWatch,
    TokenKeeper,
    refresh_failure_notice,
)
from daemon.oauth_login import device_login
from storage import db, outbox
from storage.tokens import TokenRecord, TokenStore
from tests.support.oauth_server import Clock, OAuthServer, client_for


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def silent_url() -> Iterator[str]:
    """An endpoint whose kernel accepts the connection and which never answers a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def _store(tmp_path: Path, record: TokenRecord) -> TokenStore:
    store = TokenStore.in_state_directory(tmp_path / "state", "imap")
    store.save(record)
    return store


@pytest.mark.timeout(60)  # before the fix the refresh waited forever
def test_a_token_endpoint_that_never_answers_fails_the_refresh(tmp_path: Path,
                                                               silent_url: str) -> None:
    client = OAuthClient("imap", "desk@test.example", "app", token_url=f"{silent_url}/token",
                         timeout=0.5)
    watch = RefreshWatch(None, None, "desk@test.example")
    keeper = TokenKeeper(client, _store(tmp_path, TokenRecord(refresh_token="rt-1")),
                         listener=watch)
    before = _sample("ticketd_oauth_refresh_failures_total",
                     {"mailbox": "imap", "error": "network"})
    with pytest.raises(OAuthProblem) as problem:
        keeper.access_token()
    assert not problem.value.permanent and "Timeout" in str(problem.value)
    assert _sample("ticketd_oauth_refresh_failures_total",
                   {"mailbox": "imap", "error": "network"}) == before + 1
    assert "imap" in watch.problems  # the STATUS= line tells it


@pytest.mark.timeout(60)
def test_a_login_against_an_endpoint_that_never_answers_fails(silent_url: str) -> None:
    client = OAuthClient("imap", "desk@test.example", "app", token_url=f"{silent_url}/token",
                         device_url=f"{silent_url}/devicecode", timeout=0.5)
    with pytest.raises(OAuthProblem) as problem:
        device_login(client, lambda text: None, sleep=lambda seconds: None)
    assert "Timeout" in str(problem.value)


class FullDisk(TokenStore):
    """A token store whose writes fail while `full` is set, as on a full file system."""

    full: bool = False

    def save(self, record: TokenRecord) -> None:
        if FullDisk.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().save(record)


def test_a_rotated_refresh_token_that_cannot_be_saved_is_kept_in_memory(
        tmp_path: Path) -> None:
    clock = Clock()
    with OAuthServer("desk@test.example", lifetime=3600) as idp:
        store = FullDisk(TokenStore.in_state_directory(tmp_path / "state", "imap").path)
        store.save(TokenRecord(refresh_token=idp.issue_refresh_token()))
        watch = RefreshWatch(None, None, "desk@test.example")
        keeper = TokenKeeper(client_for(idp, "imap", "desk@test.example"), store,
                             clock=clock, listener=watch)
        FullDisk.full = True
        try:
            first = keeper.access_token()  # the refresh worked; only the save failed
            assert first and "could not be saved" in watch.problems["imap"]
            clock.now += 3600  # the access token lapsed: refresh with the rotated token
            second = keeper.access_token()
        finally:
            FullDisk.full = False
        assert second != first and idp.state.refused_refreshes == 0
        keeper.access_token()  # the disk has room again: the unsaved token is written
        assert store.load().refresh_token in idp.live_refresh_tokens()
        assert watch.problems == {}


def test_a_transient_report_does_not_hide_a_later_revocation(tmp_path: Path,
                                                             sqlite_url: str) -> None:
    clock = Clock()
    sessions = db.session_factory(db.make_engine(sqlite_url))
    with OAuthServer("desk@test.example", lifetime=60) as idp:
        watch = RefreshWatch(sessions, "ops@test.example", "desk@test.example",
                             now=lambda: datetime.fromtimestamp(clock.now, UTC))
        keeper = TokenKeeper(client_for(idp, "imap", "desk@test.example"),
                             _store(tmp_path, TokenRecord(refresh_token=idp.issue_refresh_token())),
                             clock=clock, listener=watch)
        idp.state.rotate = False  # as Google: the refresh token stays the same for months
        idp.state.down = True
        for lasted in (0.0, 3600.0):  # an outage long enough to be reported
            clock.now += lasted
            keeper.invalidate()
            with pytest.raises(OAuthProblem):
                keeper.access_token()
        idp.state.down = False
        keeper.invalidate()
        keeper.access_token()
        idp.revoke()  # weeks later
        clock.now += 30 * 86400
        keeper.invalidate()
        with pytest.raises(OAuthProblem):
            keeper.access_token()
    with sessions() as session:
        rows = [r for r in outbox.list_rows(session) if r.kind == "ops"]
    assert watch.reports == 2 and len(rows) == 2


def test_the_transient_notice_does_not_ask_for_a_login() -> None:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    transient_id, transient = refresh_failure_notice(
        "smtp", "ConnectionError", "abc", to="ops@x.example", sender="d@x.example", now=now,
        permanent=False)
    permanent_id, permanent = refresh_failure_notice(
        "smtp", "invalid_grant", "abc", to="ops@x.example", sender="d@x.example", now=now,
        permanent=True)
    assert transient_id != permanent_id
    assert b"token endpoint unreachable" in transient and b"oauth login" not in transient
    assert b"ticketd oauth login smtp" in permanent
    unsaved_id, unsaved = refresh_failure_notice(
        "smtp", "ENOSPC", "abc", to="ops@x.example", sender="d@x.example", now=now,
        permanent=False, error="save_failed")
    assert unsaved_id not in (transient_id, permanent_id) and b"Free space" in unsaved


def test_a_login_picked_up_from_the_file_clears_the_status(tmp_path: Path) -> None:
    with OAuthServer("desk@test.example", lifetime=3600) as idp:
        watch = RefreshWatch(None, None, "desk@test.example")
        store = _store(tmp_path, TokenRecord(refresh_token=idp.issue_refresh_token()))
        keeper = TokenKeeper(client_for(idp, "imap", "desk@test.example"), store,
                             listener=watch)
        idp.revoke()
        with pytest.raises(OAuthProblem):
            keeper.access_token()
        assert "oauth login imap" in watch.problems["imap"]
        # `ticketd oauth login imap` in another process: a fresh record with its access token
        other = TokenKeeper(client_for(idp, "login", "desk@test.example"),
                            TokenStore(tmp_path / "login.token"))
        other.store.save(TokenRecord(refresh_token=idp.issue_refresh_token()))
        other.access_token()
        store.save(other.store.load())
        before = _sample("ticketd_oauth_token_expiry_timestamp_seconds", {"mailbox": "imap"})
        keeper.invalidate()
        keeper.access_token()
        assert watch.problems == {}
        assert _sample("ticketd_oauth_token_expiry_timestamp_seconds",
                       {"mailbox": "imap"}) != before


def test_a_database_error_while_reporting_keeps_the_valid_token(tmp_path: Path,
                                                                sqlite_url: str) -> None:
    clock = Clock()
    engine = db.make_engine(sqlite_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE outbox")  # every report now fails
    with OAuthServer("desk@test.example", lifetime=3600) as idp:
        watch = RefreshWatch(db.session_factory(engine), "ops@test.example",
                             "desk@test.example")
        keeper = TokenKeeper(client_for(idp, "imap", "desk@test.example"),
                             _store(tmp_path, TokenRecord(refresh_token=idp.issue_refresh_token())),
                             clock=clock, listener=watch)
        token = keeper.access_token()
        idp.revoke()
        clock.now += 3600 - 100  # within the refresh margin: the token still works
        assert keeper.access_token() == token  # the report failed, the token is still given
        assert "invalid_grant" in watch.problems["imap"]
