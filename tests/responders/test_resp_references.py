"""Signed Message-IDs, reply addresses and subject tags (DESIGN invariant 4)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from responders.references import (
    agent_message_id_for,
    message_id_for,
    numbers_in_subject,
    reply_address,
    strip_reply_prefixes,
    strip_tags,
    subject_tag,
    tag_subject,
    token_from_address,
    verify_agent_reference,
    verify_message_id,
)

NEW, OLD = b"new signing key", b"old signing key"
DOMAIN = "casino.example"


def _b32_hmac(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()


def test_signatures_are_the_base32_hmac_that_mail_already_sent_carries() -> None:
    # Replies to mail sent months ago must still verify: the signatures are pinned to
    # HMAC-SHA256 in lower-case base32, cut to 16 characters (12 for a reply token).
    msgid = message_id_for(10234, (NEW,), DOMAIN, nonce="abc123")
    assert msgid == f"t10234.abc123.{_b32_hmac(NEW, 't10234.abc123')[:16]}@{DOMAIN}"
    agent = agent_message_id_for(10234, (NEW,), DOMAIN, "Lead@Casino.example", nonce="sla7s1")
    bound = _b32_hmac(NEW, "to-agent:lead@casino.example:t10234.sla7s1")[:16]
    nonce = f"a{bound}sla7s1"
    assert agent == f"t10234.{nonce}.{_b32_hmac(NEW, f't10234.{nonce}')[:16]}@{DOMAIN}"
    token = _b32_hmac(NEW, "reply:t10234")[:12]
    assert reply_address("support@casino.example", 10234, (NEW,)) == \
        f"support+t10234.{token}@casino.example"


def test_message_id_round_trip_and_shape() -> None:
    msgid = message_id_for(10234, (NEW,), DOMAIN)
    number, nonce, rest = msgid.split(".", 2)
    signature, domain = rest.split("@")
    assert number == "t10234" and domain == DOMAIN
    assert len(signature) == 16 and signature.isalnum() and signature.islower()
    assert verify_message_id(msgid, (NEW,)) == 10234
    assert verify_message_id(f"<{msgid}>", (NEW,)) == 10234
    assert verify_message_id(f"  <{msgid.upper()}>  ", (NEW,)) == 10234  # MTAs that change case


def test_each_message_id_is_new_unless_the_nonce_is_given() -> None:
    assert message_id_for(7, (NEW,), DOMAIN) != message_id_for(7, (NEW,), DOMAIN)
    fixed = message_id_for(7, (NEW,), DOMAIN, nonce="Abc123")
    assert fixed == message_id_for(7, (NEW,), DOMAIN, nonce="abc123")
    assert fixed.startswith("t7.abc123.")


def test_wrong_key_fails_and_rotated_key_still_verifies() -> None:
    signed_with_old = message_id_for(10234, (OLD,), DOMAIN)
    assert verify_message_id(signed_with_old, (b"someone else's key",)) is None
    assert verify_message_id(signed_with_old, (NEW, OLD)) == 10234
    assert verify_message_id(signed_with_old, (NEW,)) is None
    assert verify_message_id(signed_with_old, ()) is None


def test_tampered_number_and_forgeries_fail() -> None:
    msgid = message_id_for(10234, (NEW,), DOMAIN)
    assert verify_message_id(msgid.replace("t10234.", "t10235.", 1), (NEW,)) is None
    assert verify_message_id(msgid.replace("t10234.", "t010234.", 1), (NEW,)) is None
    assert verify_message_id("t10234.x.y@casino.example", (NEW,)) is None
    assert verify_message_id("t10234.x.aaaaaaaaaaaaaaaa@casino.example", (NEW,)) is None
    assert verify_message_id("CAF=abc@mail.gmail.com", (NEW,)) is None
    assert verify_message_id("", (NEW,)) is None


def test_domain_is_normalised_and_checked() -> None:
    assert message_id_for(1, (NEW,), "Casino.EXAMPLE").endswith("@casino.example")
    assert message_id_for(1, (NEW,), "казино.рф").endswith("@xn--80aodfsg.xn--p1ai")
    for bad in ("", "casino example", "a@b", "-x.example"):
        with pytest.raises(ValueError):
            message_id_for(1, (NEW,), bad)


def test_signing_needs_a_key_and_a_ticket_number() -> None:
    for keys in ((), (b"",)):
        with pytest.raises(ValueError, match="signing key"):
            message_id_for(1, keys, DOMAIN)
    for number in (-1, True, 10**12, "5"):
        with pytest.raises(ValueError):
            message_id_for(number, (NEW,), DOMAIN)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        message_id_for(1, (NEW,), DOMAIN, nonce="a.b")


def test_reply_address_round_trip() -> None:
    addr = reply_address("support@casino.example", 10234, (NEW,))
    local, domain = addr.split("@")
    assert domain == DOMAIN and local.startswith("support+t10234.")
    assert token_from_address(addr, "support@casino.example", (NEW,)) == 10234
    assert token_from_address(addr.upper(), "Support@Casino.example", (NEW,)) == 10234
    assert token_from_address(f"<{addr}>", "support@casino.example", (OLD, NEW)) == 10234


def test_reply_address_refusals() -> None:
    addr = reply_address("support@casino.example", 10234, (NEW,))
    support = "support@casino.example"
    assert token_from_address(addr, support, (OLD,)) is None
    assert token_from_address(addr.replace("t10234", "t10235"), support, (NEW,)) is None
    assert token_from_address(addr, "help@casino.example", (NEW,)) is None
    assert token_from_address(addr.replace(DOMAIN, "evil.example"), support, (NEW,)) is None
    assert token_from_address(support, support, (NEW,)) is None
    assert token_from_address("support+t1.abc@casino.example", support, (NEW,)) is None
    assert token_from_address(None, support, (NEW,)) is None  # type: ignore[arg-type]


def test_message_id_signature_is_not_a_reply_token() -> None:
    msgid = message_id_for(5, (NEW,), DOMAIN, nonce="n")
    signature = msgid.split(".")[2].split("@")[0]
    forged = f"support+t5.{signature[:12]}@{DOMAIN}"
    assert token_from_address(forged, f"support@{DOMAIN}", (NEW,)) is None


def test_subject_tag_and_tagging() -> None:
    assert subject_tag(10234) == "[#10234]"
    assert tag_subject("Refund request", 10234) == "Refund request [#10234]"
    assert tag_subject("Re: Refund request [#10234]", 10234) == "Re: Refund request [#10234]"
    assert tag_subject("Re: [# 10234 ] refund", 10234) == "Re: [# 10234 ] refund"
    assert tag_subject("  ", 7) == "[#7]"
    assert tag_subject("About [#99]", 7) == "About [#99] [#7]"
    assert subject_tag(5, "[Ticket #{number}]") == "[Ticket #5]"
    with pytest.raises(ValueError):
        subject_tag(5, "{number}")


def test_numbers_found_after_any_reply_prefix() -> None:
    for subject in ("Re: Вывод [#10234]", "Fwd: [#10234] Вывод", "Ответ: Вывод [#10234]",
                    "Отв: Отв: Вывод [#10234]", "AW: Auszahlung [#10234]", "SV: [#10234]",
                    "RE[2]: Вывод [#10234]", "RE : Retrait [#010234]", "re: вывод [#10234]"):
        assert numbers_in_subject(subject) == (10234,), subject
    assert numbers_in_subject("[#1] and [#2] and [#1]") == (1, 2)
    assert numbers_in_subject("[#12345678901234]") == ()
    assert numbers_in_subject("Order #10234") == ()
    assert numbers_in_subject("re: [ticket #42]", "[Ticket #{number}]") == (42,)


def test_strip_reply_prefixes_and_tags() -> None:
    assert strip_reply_prefixes("Re: Fwd: Отв: Ответ: AW: SV: RE[2]: Re(3): FW: Вывод") == "Вывод"
    assert strip_reply_prefixes("RE : Retrait") == "Retrait"
    assert strip_reply_prefixes("Re:") == ""
    assert strip_reply_prefixes("Remittance: late") == "Remittance: late"
    assert strip_reply_prefixes("Отвратительный сервис") == "Отвратительный сервис"
    assert strip_tags("Вывод [#99] средств [#7]") == "Вывод средств"


def test_an_agent_message_id_threads_and_authorises_its_recipient_only() -> None:
    msgid = agent_message_id_for(10234, (NEW,), DOMAIN, "Anna@Casino.example")
    assert len(msgid) < 100
    assert verify_message_id(msgid, (NEW,)) == 10234  # threads like any of ours
    assert verify_agent_reference(f"<{msgid}>", (NEW,), ("anna@casino.example",)) == 10234
    assert verify_agent_reference(msgid, (OLD, NEW), ("bob@x.example", "anna@casino.example"))
    assert verify_agent_reference(msgid, (NEW,), ("bob@casino.example",)) is None
    assert verify_agent_reference(msgid, (OLD,), ("anna@casino.example",)) is None
    assert verify_agent_reference(msgid, (NEW,), ()) is None


def test_a_players_message_id_is_no_agent_reference_and_a_stable_nonce_stays_stable() -> None:
    player = message_id_for(10234, (NEW,), DOMAIN)
    assert verify_agent_reference(player, (NEW,), ("anna@casino.example",)) is None
    # Another ticket's number under the same recipient signature does not verify.
    msgid = agent_message_id_for(7, (NEW,), DOMAIN, "anna@casino.example", nonce="sla12s1")
    assert msgid == agent_message_id_for(7, (NEW,), DOMAIN, "anna@casino.example",
                                         nonce="sla12s1")
    moved = msgid.replace("t7.", "t8.", 1)
    assert verify_agent_reference(moved, (NEW,), ("anna@casino.example",)) is None
    long_nonce = agent_message_id_for(7, (NEW,), DOMAIN, "a@b.example", nonce="n" * 30)
    assert verify_agent_reference(long_nonce, (NEW,), ("a@b.example",)) == 7
