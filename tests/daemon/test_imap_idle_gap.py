"""Mail that arrives between two IDLEs of ImapSource.wait(), against a real Dovecot.

The service waits in slices: IDLE, DONE, IDLE again. Dovecot announces mail that came in the
gap right after its "+ idling", in the same packet; imaplib reads that packet into its buffer,
where IMAPClient's idle_check() (a poll of the socket) does not look. Such mail used to wait
for the end of the next IDLE: the ~2 s outlier of bench/latency.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from daemon.imap import ImapSource
from tests.support.dovecot import Account, DovecotServer
from tests.support.mails import mail

pytestmark = pytest.mark.dovecot
WAIT = 20.0  # seconds: far longer than the server takes to announce anything


@pytest.fixture(params=["none", "implicit"])
def source(imap_account: Account, request: pytest.FixtureRequest) -> Iterator[ImapSource]:
    tls = request.param
    connected = ImapSource(
        host=imap_account.host, tls=tls, username=imap_account.username,
        port=imap_account.tls_port if tls == "implicit" else imap_account.port,
        password=imap_account.password, ca_file=imap_account.cafile, timeout=10)
    connected.connect()
    yield connected
    connected.close()


def test_mail_that_arrived_between_two_idles_is_reported_when_the_next_one_starts(
        dovecot: DovecotServer, imap_account: Account, source: ImapSource) -> None:
    assert source.pending(10) == []
    for i in range(3):
        assert source.wait(0.2) is False  # one slice ends with DONE, as in the service
        dovecot.append(imap_account, mail(subject=f"In the gap {i}"))
        started = time.monotonic()
        assert source.wait(WAIT) is True
        assert time.monotonic() - started < WAIT / 2  # not at the end of the IDLE
        [uid] = source.pending(10)
        source.mark_processed([uid])


def test_a_wait_with_nothing_buffered_still_idles_until_its_timeout(source: ImapSource) -> None:
    source.pending(10)
    started = time.monotonic()
    assert source.wait(0.5) is False
    assert time.monotonic() - started >= 0.5
    source.noop()  # the socket is back in blocking mode: a non-blocking one would fail here
