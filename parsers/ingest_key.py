"""The ingest key: what makes a second copy of the same mail a no-op (DESIGN invariant 1).

It is computed from the raw bytes alone, before and whatever the parse, so a
mail that fails to parse gets the same key on every attempt.

Beside it, the content digest tells the same mail delivered twice from two
different mails that share a Message-ID (clients that reuse ids exist): it hashes
only the fields the author wrote (From, To, Subject, Date, Message-ID …) and the body,
never what a hop adds on the way in (Received, X-Received, a forwarder's DKIM-Signature,
ARC-*, X-MS-Exchange-* …), so a re-delivery is a copy and a different text under the
same id is a mail of its own.
"""

from __future__ import annotations

import hashlib
import re

from parsers.headers import bounded_id

_HEADER_END = re.compile(rb"\r?\n\r?\n|\r\r")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_ANGLE = re.compile(rb"<([^<>\s]+)>")
_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")
# Fields the author's client writes (RFC 5322 §3.6, RFC 2045): a hop adds fields of its own
# (Received, X-Received, X-MS-Exchange-*, a forwarder's DKIM-Signature, ARC-* …), a list of
# which is never complete, so only these and the body decide whether two mails are one.
_AUTHOR = frozenset({
    b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"in-reply-to", b"references",
    b"mime-version", b"content-type", b"content-transfer-encoding",
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
    """The sha256 of the author's fields (`_AUTHOR`, in their order) and the body, line ends
    made LF: the same for every delivery of one mail whatever fields the hops added,
    different as soon as an author's field or the body differs."""
    # Stored digests are compared with new ones: the bytes hashed must never change, only
    # how many copies of the mail it takes to get them (none of the body, for a mail in LF).
    data = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in raw else raw
    end = data.find(b"\n\n")
    head, body = (data, b"") if end < 0 else (data[: end + 1], memoryview(data)[end + 1 :])
    kept: list[bytes] = []
    keeping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):  # a continuation belongs to the field above it
            if keeping:
                kept.append(line)
            continue
        name = _FIELD_NAME.match(line)
        keeping = bool(name) and name.group(1).lower() in _AUTHOR  # type: ignore[union-attr]
        if keeping:
            kept.append(line)
    digest = hashlib.sha256(b"\n".join(kept))
    digest.update(body)
    return digest.hexdigest()
