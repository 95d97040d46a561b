"""ImapSource against a real Dovecot (tests/support/dovecot.py); no mocks."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from daemon.imap import (
    DONE_KEYWORD,
    ImapAuthError,
    ImapCertificateError,
    ImapConfigError,
    ImapSource,
    connect_with_retry,
    is_temporary,
    retry_delay,
)
from tests.support.dovecot import Account, DovecotServer

pytestmark = pytest.mark.dovecot

SourceFactory = Callable[..., ImapSource]
SEEN = b"\\Seen"


def message(subject: str = "Printer on fire", body: str = "It is still burning.\r\n") -> bytes:
    return (
        "From: Customer <customer@test.example>\r\n"
        "To: support@test.example\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@test.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n" + body
    ).encode()


@pytest.fixture
def make_source(imap_account: Account) -> Iterator[SourceFactory]:
    """Builds ImapSources for the test's account (or another); closes them afterwards."""
    opened: list[ImapSource] = []

    def make(account: Account = imap_account, *, tls: str = "none", trust_test_ca: bool = True,
             **overrides: object) -> ImapSource:
        settings: dict[str, object] = {
            "host": account.host,
            "port": account.tls_port if tls == "implicit" else account.port,
            "tls": tls,
            "username": account.username,
            "password": account.password,
            "ca_file": account.cafile if trust_test_ca else None,
            "timeout": 10,
        }
        source = ImapSource(**(settings | overrides))  # type: ignore[arg-type]
        opened.append(source)
        return source

    yield make
    for source in opened:
        source.close()


@pytest.fixture
def source(make_source: SourceFactory) -> ImapSource:
    connected = make_source()
    connected.connect()
    return connected


def retries_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "daemon.imap" and "retrying" in r.getMessage()]


def last_login(dovecot: DovecotServer, account: Account) -> str:
    """Dovecot's newest login line for the account; it marks TLS sessions with ", TLS,"."""
    deadline = time.monotonic() + 2  # the log process writes asynchronously
    while True:
        lines = [line for line in dovecot.log_path.read_text().splitlines()
                 if f"Login: user=<{account.username}>" in line]
        if lines or time.monotonic() > deadline:
            return lines[-1] if lines else ""
        time.sleep(0.05)


def stop_after(seconds: float) -> threading.Event:
    """A stop_event for connect_with_retry, so that a wrong retry fails instead of hanging."""
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    timer.start()
    return stop


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- connecting ----------------------------------------------------------------------------

@pytest.mark.parametrize("tls", ["none", "starttls", "implicit"])
def test_connects_and_creates_the_target_folders(
        dovecot: DovecotServer, imap_account: Account, make_source: SourceFactory,
        tls: str) -> None:
    assert not dovecot.folder_exists(imap_account, "Processed")
    source = make_source(tls=tls)
    source.connect()
    assert (", TLS," in last_login(dovecot, imap_account)) == (tls != "none")
    assert source.uidvalidity == dovecot.uidvalidity(imap_account)
    assert {"IDLE", "MOVE", "UIDPLUS"} <= source.capabilities
    assert dovecot.folder_exists(imap_account, "Processed")
    assert dovecot.folder_exists(imap_account, "Quarantine")


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_untrusted_certificate_fails_at_once_without_retry(
        make_source: SourceFactory, caplog: pytest.LogCaptureFixture, tls: str) -> None:
    source = make_source(tls=tls, trust_test_ca=False)  # default trust store only
    with pytest.raises(ImapCertificateError) as failure:
        connect_with_retry(source, stop_after(5))
    assert not is_temporary(failure.value)
    assert retries_logged(caplog) == []


def test_implicit_tls_against_the_plain_port_is_a_config_error(
        imap_account: Account, make_source: SourceFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    source = make_source(tls="implicit", port=imap_account.port)
    with pytest.raises(ImapConfigError):
        connect_with_retry(source, stop_after(5))
    assert retries_logged(caplog) == []


def test_wrong_password_fails_fast_as_an_auth_error(
        make_source: SourceFactory, caplog: pytest.LogCaptureFixture) -> None:
    source = make_source(password="not-the-password")
    started = time.monotonic()
    with pytest.raises(ImapAuthError):
        connect_with_retry(source, stop_after(5))
    assert time.monotonic() - started < 1.0
    assert retries_logged(caplog) == []


def test_unreachable_server_is_retried_until_stopped(
        make_source: SourceFactory, caplog: pytest.LogCaptureFixture) -> None:
    source = make_source(port=closed_port())
    started = time.monotonic()
    assert connect_with_retry(source, stop_after(0.8)) is False
    assert time.monotonic() - started < 2.0
    assert retries_logged(caplog)


def test_connect_with_retry_connects(make_source: SourceFactory) -> None:
    source = make_source(tls="starttls")
    assert connect_with_retry(source) is True
    assert source.pending(10) == []


def test_an_oauth2_login_the_server_refuses_is_an_auth_error(make_source: SourceFactory) -> None:
    source = make_source(password=None, oauth2_token="not-a-token")  # Dovecot: no XOAUTH2 here
    with pytest.raises(ImapAuthError):
        connect_with_retry(source, stop_after(5))


def test_retry_delays_grow_with_jitter_up_to_the_cap() -> None:
    assert 0.5 <= retry_delay(1) <= 1.0
    assert 4.0 <= retry_delay(4) <= 8.0
    assert all(30.0 <= retry_delay(attempt) <= 60.0 for attempt in (8, 50, 100_000))


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="tls"):
        ImapSource(host="127.0.0.1", port=1, tls="yes", username="u", password="p")
    with pytest.raises(ValueError, match="exactly one"):
        ImapSource(host="127.0.0.1", port=1, tls="none", username="u",
                   password="p", oauth2_token="t")


# -- reading -------------------------------------------------------------------------------

def test_pending_and_fetch_return_the_appended_bytes_exactly_and_leave_them_unseen(
        dovecot: DovecotServer, imap_account: Account, source: ImapSource) -> None:
    raws = [
        message("Привет", "Принтер горит.  \r\n\r\n-- \r\nИван\r\n"),
        message("no final line break", "last line"),
        message("tabs and long lines", "\t" + "x" * 990 + "\r\n"),
    ]
    uids = [dovecot.append(imap_account, raw) for raw in raws]

    assert source.pending(10) == uids
    fetched = source.fetch(uids)
    assert [(f.uid, f.raw, f.size) for f in fetched] == [
        (uid, raw, len(raw)) for uid, raw in zip(uids, raws, strict=True)]
    assert all(SEEN not in flags for flags in dovecot.flags(imap_account).values())


def test_fetch_brings_the_servers_internaldate_in_utc(
        dovecot: DovecotServer, imap_account: Account, source: ImapSource) -> None:
    """A complaint's receipt is when our mailbox got it, not when the daemon read it."""
    delivered = datetime(2026, 11, 2, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    uid = dovecot.append(imap_account, message("sent on Monday"), delivered_at=delivered)
    assert source.pending(10) == [uid]
    [fetched] = source.fetch([uid])
    assert fetched.delivered_at == delivered and fetched.delivered_at.utcoffset() == timedelta(0)


def test_internaldate_keeps_its_zone_whatever_the_daemons_local_time(
        dovecot: DovecotServer, imap_account: Account, source: ImapSource,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon whose local zone has summer time: a winter and a summer INTERNALDATE are
    both the instant the server gave, not an hour off at today's offset."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        moments = [datetime(2026, 1, 15, 12, 0, tzinfo=UTC), datetime(2026, 7, 15, 12, 0,
                                                                       tzinfo=UTC)]
        uids = [dovecot.append(imap_account, message(f"m{i}"), delivered_at=moment)
                for i, moment in enumerate(moments)]
        assert source.pending(10) == uids
        assert [f.delivered_at for f in source.fetch(uids)] == moments
    finally:
        monkeypatch.undo()
        time.tzset()


def test_pending_is_ascending_and_limited(
        dovecot: DovecotServer, imap_account: Account, source: ImapSource) -> None:
    uids = [dovecot.append(imap_account, message(f"m{i}")) for i in range(5)]
    assert source.pending(3) == uids[:3]


def test_message_over_max_bytes_comes_back_sized_but_not_downloaded(
        dovecot: DovecotServer, imap_account: Account, make_source: SourceFactory) -> None:
    big, small = message("big", "x" * 5000 + "\r\n"), message("small")
    uids = [dovecot.append(imap_account, raw) for raw in (big, small)]
    source = make_source(max_bytes=2000)
    source.connect()
    assert [(f.uid, f.raw, f.size) for f in source.fetch(uids)] == [
        (uids[0], None, len(big)), (uids[1], small, len(small))]
    assert all(SEEN not in flags for flags in dovecot.flags(imap_account).values())


def test_pending_after_a_restart_lists_everything_left_in_the_folder(
        dovecot: DovecotServer, imap_account: Account, make_source: SourceFactory) -> None:
    uids = [dovecot.append(imap_account, message(f"m{i}")) for i in range(4)]
    before_crash = make_source()
    before_crash.connect()
    before_crash.mark_processed(uids[:1])
    before_crash.close()  # uids[1:3] were stored but never moved
    dovecot.add_flags(imap_account, uids[3:], ["\\Deleted"])  # deleted by an agent

    after_restart = make_source()
    after_restart.connect()
    assert after_restart.pending(10) == uids[1:3]


def test_reset_uidvalidity_gives_a_new_uidvalidity_and_keeps_the_messages(
        dovecot: DovecotServer, imap_account: Account, make_source: SourceFactory) -> None:
    raws = [message("a"), message("b")]
    for raw in raws:
        dovecot.append(imap_account, raw)
    before = make_source()
    before.connect()
    old = before.uidvalidity
    before.close()

    new = dovecot.reset_uidvalidity(imap_account)

    after = make_source()
    after.connect()
    assert after.uidvalidity == new != old
    assert [f.raw for f in after.fetch(after.pending(10))] == raws


# -- filing away ---------------------------------------------------------------------------

def test_mark_processed_moves_into_processed(
        dovecot: DovecotServer, imap_account: Account, source: ImapSource) -> None:
    raw = message()
    done, waiting = dovecot.append(imap_account, raw), dovecot.append(imap_account, message())
    assert source.pending(10) == [done, waiting]  # the caller files UIDs pending() gave it
    source.mark_processed([done])
    assert source.pending(10) == [waiting]
    assert dovecot.uids(imap_account) == [waiting]
    assert dovecot.fetch_all(imap_account, "Processed") == [raw]


def test_mark_quarantined_moves_into_quarantine(
        dovecot: DovecotServer, imap_account: Account, source: ImapSource) -> None:
    raw = message("garbage")
    uid = dovecot.append(imap_account, raw)
    assert source.pending(10) == [uid]
    source.mark_quarantined([uid])
    assert source.pending(10) == []
    assert dovecot.fetch_all(imap_account, "Quarantine") == [raw]
    assert dovecot.fetch_all(imap_account, "Processed") == []


def test_without_move_it_copies_and_expunges_only_its_own_messages(
        dovecot: DovecotServer, imap_account: Account, make_source: SourceFactory) -> None:
    raw = message()
    ours, agents = dovecot.append(imap_account, raw), dovecot.append(imap_account, message())
    dovecot.add_flags(imap_account, [agents], ["\\Deleted"])  # not ours to expunge
    source = make_source(ignore_capabilities={"MOVE"})
    source.connect()
    source.mark_processed([ours])
    assert dovecot.uids(imap_account) == [agents]
    assert dovecot.fetch_all(imap_account, "Processed") == [raw]


def test_without_move_and_uidplus_a_keyword_keeps_it_out_of_pending(
        dovecot: DovecotServer, imap_account: Account, make_source: SourceFactory) -> None:
    raw = message()
    done, waiting = dovecot.append(imap_account, raw), dovecot.append(imap_account, message())
    source = make_source(ignore_capabilities={"MOVE", "UIDPLUS"})
    source.connect()
    source.mark_processed([done])
    assert source.pending(10) == [waiting]
    assert DONE_KEYWORD.encode() in dovecot.flags(imap_account)[done]  # still in INBOX
    assert dovecot.fetch_all(imap_account, "Processed") == [raw]
    restarted = make_source()
    restarted.connect()
    assert restarted.pending(10) == [waiting]


# -- waiting -------------------------------------------------------------------------------

def test_wait_returns_true_within_a_second_after_another_connection_appends(
        dovecot: DovecotServer, imap_account: Account, source: ImapSource) -> None:
    outcome: dict[str, float | bool] = {}

    def wait() -> None:
        outcome["arrived"] = source.wait(10)
        outcome["returned"] = time.monotonic()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)  # let IDLE begin
    appending = time.monotonic()
    dovecot.append(imap_account, message())
    appended = time.monotonic()
    waiter.join(10)

    latency = outcome["returned"] - appending
    print(f"IDLE pickup: {latency * 1000:.1f} ms from APPEND start "
          f"({(outcome['returned'] - appended) * 1000:.1f} ms from its end)")
    assert outcome["arrived"] is True
    assert latency < 1.0
    assert len(source.pending(10)) == 1


def test_wait_returns_false_after_the_timeout_when_nothing_arrives(source: ImapSource) -> None:
    started = time.monotonic()
    assert source.wait(0.5) is False
    assert 0.5 <= time.monotonic() - started < 1.5
    source.noop()  # the connection is usable after IDLE
    assert source.pending(10) == []


def test_wait_returns_at_once_for_mail_announced_during_an_earlier_command(
        dovecot: DovecotServer, imap_account: Account, source: ImapSource) -> None:
    source.pending(10)
    dovecot.append(imap_account, message())
    source.noop()  # the server reports EXISTS here; IDLE would not repeat it
    started = time.monotonic()
    assert source.wait(5) is True
    assert time.monotonic() - started < 0.5
    assert len(source.pending(10)) == 1


def test_wait_without_idle_sleeps_and_polls(
        dovecot: DovecotServer, imap_account: Account, make_source: SourceFactory) -> None:
    source = make_source(ignore_capabilities={"IDLE"})
    source.connect()
    started = time.monotonic()
    assert source.wait(0.3) is False
    assert 0.3 <= time.monotonic() - started < 1.0
    dovecot.append(imap_account, message())
    assert source.wait(0.3) is True
    assert len(source.pending(10)) == 1


def test_connection_dropped_during_wait_is_a_temporary_error(
        dovecot: DovecotServer, imap_account: Account, source: ImapSource) -> None:
    threading.Timer(0.3, dovecot.kick, args=(imap_account,)).start()
    started = time.monotonic()
    with pytest.raises(Exception) as failure:
        source.wait(10)
    assert is_temporary(failure.value)
    assert time.monotonic() - started < 2.0
    source.close()
    source.close()  # never raises, not even twice
    assert connect_with_retry(source) is True
    assert source.pending(10) == []


# -- logs ----------------------------------------------------------------------------------

def test_logs_hold_no_password_token_or_message_body(
        dovecot: DovecotServer, imap_account: Account, make_source: SourceFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # IMAPClient's protocol trace included
    uid = dovecot.append(imap_account, message(body="body-marker-7f3a\r\n"))
    with pytest.raises(ImapAuthError):
        make_source(password=None, oauth2_token="token-marker-9c1e").connect()
    source = make_source(tls="starttls")
    source.connect()
    source.fetch([uid])
    source.mark_processed([uid])
    assert caplog.records
    assert imap_account.password not in caplog.text
    assert "token-marker-9c1e" not in caplog.text
    assert "body-marker-7f3a" not in caplog.text
