"""The ingest key: what makes a second copy of the same mail a no-op (DESIGN invariant 1).

It is computed from the raw bytes alone, before and whatever the parse, so a
mail that fails to parse gets the same key on every attempt.

Beside it, the content digest tells the same mail delivered twice from two
different mails that share a Message-ID (clients that reuse ids exist): it hashes
the bytes without the trace fields that each delivery adds on its way in
(Received, Delivered-To, our MTA's Authentication-Results and spam verdicts …), so
a re-delivery is a copy and a different text under the same id is a mail of its own.
"""

from __future__ import annotations

import hashlib
import re

from parsers.headers import bounded_id

_HEADER_END = re.compile(rb"\r?\n\r?\n|\r\r")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_ANGLE = re.compile(rb"<([^<>\s]+)>")
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")
# Fields a hop adds on delivery (RFC 5322 §3.6.7, RFC 8601, RFC 8617, the spam filters').
_TRACE = frozenset({
    b"received", b"return-path", b"delivered-to", b"x-original-to", b"envelope-to",
    b"authentication-results", b"arc-seal", b"arc-message-signature",
    b"arc-authentication-results", b"received-spf", b"x-spam-flag", b"x-spam-status",
    b"x-spam-level", b"x-spam-score", b"x-spam-checker-version", b"x-spam-report", b"x-spam",
    b"x-spamd-result", b"x-spamd-bar", b"x-rspamd-action", b"x-rspamd-server",
    b"x-rspamd-queue-id", b"x-virus-scanned", b"x-virus-status",
})  # fmt: skip


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID of the header block, without angle brackets, bounded, or None."""
    end = _HEADER_END.search(raw, 0, 256 * 1024)
    head = raw[: end.start() if end else 256 * 1024]
    found = _MESSAGE_ID.search(head)
    if not found:
        return None
    value = found.group(1)
    angle = _ANGLE.search(value)
    text = (angle.group(1) if angle else value.strip()[:2000]).decode("utf-8", "replace")
    return bounded_id(text) if text else None


def ingest_key(raw: bytes) -> tuple[str, str | None, str]:
    """(key, message_id, raw sha256). The key is the Message-ID plus the hash of the bytes."""
    digest = hashlib.sha256(raw).hexdigest()
    message_id = header_message_id(raw)
    if message_id is None:
        return digest, None, digest
    key = hashlib.sha256(f"{message_id}\n{digest}".encode()).hexdigest()
    return key, message_id, digest


def content_digest(raw: bytes) -> str:
    """The sha256 of the mail without its trace fields, line ends made LF: the same for
    every delivery of one mail, different as soon as a header or the body differs."""
    data = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    end = data.find(b"\n\n")
    head, body = (data, b"") if end < 0 else (data[: end + 1], data[end + 1 :])
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):  # a continuation belongs to the field above it
            if not dropping:
                kept.append(line)
            continue
        name = _FIELD_NAME.match(line)
        dropping = bool(name) and name.group(1).lower() in _TRACE  # type: ignore[union-attr]
        if not dropping:
            kept.append(line)
    return hashlib.sha256(b"\n".join(kept) + body).hexdigest()
