"""The webhook body and its signature, as values: what the platform reads and how it checks
that ticketd sent it."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from responders.webhooks import (
    SELF_EXCLUSION,
    SLA_BREACHED,
    TICKET_CREATED,
    TicketFacts,
    event_body,
    headers,
    signature,
    verify,
)

KEY = b"platform-shared-key-0123456789ab"
OLD_KEY = b"platform-older-key-0123456789abc"
FACTS = TicketFacts(10042, "self_exclusion", "urgent", 7, "player@mail.test")
AT = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def test_the_body_names_the_event_the_ticket_and_the_contact() -> None:
    body = event_body(SELF_EXCLUSION, "evt_1", AT, FACTS, {"intent": "self_exclusion"})
    assert json.loads(body) == {
        "id": "evt_1", "type": SELF_EXCLUSION, "created_at": "2026-12-06T10:00:00Z",
        "ticket": {"number": 10042, "category": "self_exclusion", "priority": "urgent",
                   "brand": "default"},
        "contact": {"id": 7, "address": "player@mail.test"},
        "data": {"intent": "self_exclusion"},
    }


@pytest.mark.parametrize("event", [TICKET_CREATED, SLA_BREACHED])
def test_only_self_exclusion_carries_the_address(event: str) -> None:
    doc = json.loads(event_body(event, "evt_2", AT, FACTS))
    assert doc["contact"] == {"id": 7} and b"player@mail.test" not in event_body(
        event, "evt_2", AT, FACTS)


def test_the_body_is_the_same_bytes_for_the_same_event() -> None:
    moscow = AT.astimezone(timezone(timedelta(hours=3)))
    assert event_body(TICKET_CREATED, "e", AT, FACTS) == event_body(TICKET_CREATED, "e", moscow,
                                                                    FACTS)


def test_an_unknown_event_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown webhook event"):
        event_body("ticket.deleted", "e", AT, FACTS)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    expected = hmac.new(KEY, b"1764000000." + body, hashlib.sha256).hexdigest()
    assert signature((KEY,), body, 1764000000) == f"t=1764000000,v1={expected}"


def test_a_receiver_accepts_a_fresh_signature_and_nothing_else() -> None:
    body = event_body(TICKET_CREATED, "evt_3", AT, FACTS)
    signed = signature((KEY,), body, 1764000000)
    assert verify(KEY, body, signed, now=1764000000 + 60)
    assert not verify(KEY, body + b" ", signed, now=1764000000)  # another body
    assert not verify(OLD_KEY, body, signed, now=1764000000)  # another key
    assert not verify(KEY, body, signed, now=1764000000 + 301)  # a replay, too late
    assert not verify(KEY, body, signed.replace("t=1764000000", "t=1764000100"),
                      now=1764000100)  # a timestamp moved to pass the check
    assert not verify(KEY, body, "v1=00", now=1764000000)


def test_while_keys_change_both_sign_and_either_verifies() -> None:
    body = event_body(TICKET_CREATED, "evt_4", AT, FACTS)
    signed = signature((KEY, OLD_KEY), body, 1764000000)
    assert signed.count("v1=") == 2
    assert verify(KEY, body, signed, 1764000000) and verify(OLD_KEY, body, signed, 1764000000)


def test_headers_say_what_it_is_and_its_stable_id() -> None:
    sent = headers(SLA_BREACHED, "evt_5", "t=1,v1=ab")
    assert sent["Content-Type"] == "application/json"
    assert (sent["Ticketd-Event"], sent["Ticketd-Delivery"], sent["Ticketd-Signature"]) == (
        SLA_BREACHED, "evt_5", "t=1,v1=ab")


CRAFTED = ["t=\u00b2,v1=00", "t=1764000000,v1=\u00e9\u00e9", "t=\u0661\u0667,v1=00"]


@pytest.mark.parametrize("header", CRAFTED)
def test_a_crafted_signature_header_is_refused_not_raised(header: str) -> None:
    assert not verify(KEY, b"{}", header, now=1764000000)


@pytest.mark.parametrize("header", CRAFTED)
def test_the_readme_receiver_refuses_a_crafted_header_without_raising(header: str) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    [snippet] = re.findall(r"```python\n(import hashlib, hmac, time\n.*?)```", readme, re.S)
    scope: dict = {}
    exec(snippet, scope)  # noqa: S102 - the README's own code, as receivers copy it
    assert not scope["verify"](KEY, b"{}", header)
    assert not scope["verify"](KEY, b"{}", f"t={int(time.time())},v1=\u00e9\u00e9")
    body = b'{"id":"evt_9"}'
    assert scope["verify"](KEY, body, signature((KEY,), body, int(time.time())))
