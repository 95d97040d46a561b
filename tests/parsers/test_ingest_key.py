"""The ingest key and the content digest are stored: the same bytes must always give the
digests earlier releases stored, or re-deliveries of old mails would stop being copies."""

from __future__ import annotations

import pytest

from parsers.ingest_key import content_digest, ingest_key

MAIL = (b"Received: from relay.test\nFrom: Anna <anna@mail.test>\nX-Trace: a\n b\n"
        b"Subject: Refund\n  please\nMessage-ID: <a1@mail.test>\n\nHello,\nmy refund.\n\nThanks\n")
# Computed by the first content digest (line ends replaced, the kept fields and body joined).
MAIL_CONTENT = "8a066bbcf3b8a07b91438ed1c757d0512b5e8264e938667e4a30f08d9712e197"


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_the_content_digest_is_the_stored_one_whatever_the_line_ends(line_end: bytes) -> None:
    assert content_digest(MAIL.replace(b"\n", line_end)) == MAIL_CONTENT


def test_mixed_line_ends_and_a_mail_without_body_keep_their_digests() -> None:
    mixed = MAIL.replace(b"my refund.\n\n", b"my refund.\r")
    assert content_digest(mixed) == "4e5a9cf88c8f277049741d7d770fcc86417b8fe3715565d976f1d3b1ee69c958"
    assert content_digest(b"From: a@b\nSubject: no body") == (
        "a620afbbe1614c4513716bc4dffa86d7406529ef73122a2e2f19e3940d6d6db7")


def test_a_hop_field_leaves_the_content_digest_alone_an_author_field_does_not() -> None:
    assert content_digest(b"X-Received: by mx.test\n" + MAIL) == MAIL_CONTENT
    assert content_digest(MAIL.replace(b"Subject: Refund", b"Subject: Refunds")) != MAIL_CONTENT


def test_the_ingest_key_is_the_message_id_plus_the_raw_digest() -> None:
    key, message_id, raw = ingest_key(MAIL)
    assert (message_id, raw) == (
        "a1@mail.test", "04e0fbe11d6a85eb4c87cd0d5f7d6882dce243aa7fa685987a317d905e9894bc")
    assert key != raw
