"""Spam verdicts count only when our own MTA wrote them: the topmost copy of each header,
above the first Received header that a hop outside ours wrote (invariant 10)."""

from __future__ import annotations

import pytest

from parsers import parse
from parsers.spam import SpamPolicy, spam_verdict, trusted_block
from tests.support.mails import mail

OURS = "from mx.player.test (mx.player.test [192.0.2.7]) by mx1.casino.test (Postfix) with ESMTPS"
THEIRS = "from [10.0.0.2] by mx.player.test (Postfix) with ESMTPSA"


def with_headers(*headers: tuple[str, str], body: bytes | None = None) -> bytes:
    """A mail whose header block starts with `headers`, top first, as hops prepend them."""
    top = b"".join(f"{name}: {value}\r\n".encode() for name, value in headers)
    return top + (body or mail(sender="player@mail.test"))


def verdict(raw: bytes, **policy: object):  # noqa: ANN202
    return spam_verdict(parse(raw), SpamPolicy(**policy))  # type: ignore[arg-type]


@pytest.mark.parametrize("name, value", [
    ("X-Spam-Flag", "YES"),
    ("X-Spam-Status", "Yes, score=14.2 required=5.0 tests=BAYES_99,URIBL_BLACK"),
    ("X-Spamd-Result", "default: True [16.40 / 15.00]; BAYES_SPAM(5.10)"),
    ("X-Rspamd-Action", "reject"),
    ("X-Rspamd-Action", "add header"),
    ("X-Spam", "Yes"),
])
def test_our_filter_above_our_received_is_spam(name: str, value: str) -> None:
    found = verdict(with_headers((name, value), ("Received", OURS), ("Received", THEIRS)))
    assert found is not None and found.header == name.lower()


@pytest.mark.parametrize("name, value", [
    ("X-Spam-Flag", "NO"), ("X-Spam-Status", "No, score=0.1"),
    ("X-Spamd-Result", "default: False [1.2 / 15.0]"), ("X-Rspamd-Action", "no action"),
    ("X-Rspamd-Action", "greylist"),
])
def test_our_filter_saying_no_is_not_spam(name: str, value: str) -> None:
    assert verdict(with_headers((name, value), ("Received", OURS), ("Received", THEIRS))) is None


def test_a_header_between_our_received_and_theirs_counts() -> None:
    # A milter's header lands below the MTA's own Received: still written on our side.
    raw = with_headers(("Received", OURS), ("X-Spam-Flag", "YES"), ("Received", THEIRS))
    assert verdict(raw) is not None


def test_the_senders_spam_header_below_the_handover_changes_nothing() -> None:
    raw = with_headers(("Received", OURS), ("Received", THEIRS), ("X-Spam-Flag", "YES"))
    assert verdict(raw) is None


def test_a_players_no_below_our_yes_changes_nothing() -> None:
    raw = with_headers(("X-Spam-Flag", "YES"), ("Received", OURS), ("Received", THEIRS),
                       ("X-Spam-Flag", "NO"), ("X-Spam-Status", "No, score=-100"))
    assert verdict(raw) is not None


def test_a_no_never_outweighs_another_headers_yes() -> None:
    # SpamAssassin writes X-Spam-Flag only for spam; a sender's own "NO" right below our
    # Received must not cancel our X-Spam-Status.
    raw = with_headers(("X-Spam-Status", "Yes, score=9"), ("Received", OURS),
                       ("X-Spam-Flag", "NO"), ("Received", THEIRS))
    assert verdict(raw) is not None


def test_only_the_topmost_copy_is_read() -> None:
    raw = with_headers(("X-Rspamd-Action", "no action"), ("X-Rspamd-Action", "reject"),
                       ("Received", OURS), ("Received", THEIRS))
    assert verdict(raw) is None


def test_without_any_received_header_nothing_is_trusted() -> None:
    assert verdict(with_headers(("X-Spam-Flag", "YES"))) is None


def test_trusted_hops_extend_the_block_through_our_own_relays() -> None:
    amavis = "from localhost (localhost [127.0.0.1]) by mx1.casino.test (Postfix)"
    scanner = "from mx1.casino.test ([127.0.0.1]) by filter.casino.test (amavis)"
    raw = with_headers(("Received", amavis), ("Received", scanner), ("X-Spam-Flag", "YES"),
                       ("Received", OURS), ("Received", THEIRS))
    # By default only the topmost Received is ours: the flag sits below the second one.
    assert verdict(raw) is None
    hops = frozenset({"mx1.casino.test", "filter.casino.test"})
    assert verdict(raw, trusted_hops=hops) is not None
    # A forged "by mx1.casino.test" below the sender's hop is not reached.
    forged = with_headers(("Received", OURS), ("Received", THEIRS), ("X-Spam-Flag", "YES"),
                          ("Received", "from x by mx1.casino.test"))
    assert verdict(forged, trusted_hops=hops) is None


def test_turned_off_and_custom_headers() -> None:
    raw = with_headers(("X-Spam-Flag", "YES"), ("X-Filter", "junk 99"), ("Received", OURS))
    assert verdict(raw, enabled=False) is None
    custom = verdict(raw, headers=(("X-Filter", r"junk\b"),))
    assert custom is not None and custom.reason == "x-filter: junk 99"


def test_trusted_block_stops_at_the_first_foreign_received() -> None:
    headers = (("x-a", "1"), ("received", OURS), ("x-b", "2"), ("received", THEIRS),
               ("x-c", "3"))
    assert [n for n, _ in trusted_block(headers, frozenset())] == ["x-a", "received", "x-b"]
