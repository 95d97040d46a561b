"""The ingest key: what makes a second copy of the same mail a no-op (DESIGN invariant 1).

It is computed from the raw bytes alone, before and whatever the parse, so a
mail that fails to parse gets the same key on every attempt.
"""

from __future__ import annotations

import hashlib
import re

_HEADER_END = re.compile(rb"\r?\n\r?\n|\r\r")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_ANGLE = re.compile(rb"<([^<>\s]{1,900})>")


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID of the header block, without angle brackets, or None."""
    end = _HEADER_END.search(raw, 0, 256 * 1024)
    head = raw[: end.start() if end else 256 * 1024]
    found = _MESSAGE_ID.search(head)
    if not found:
        return None
    value = found.group(1)
    angle = _ANGLE.search(value)
    text = (angle.group(1) if angle else value.strip()).decode("utf-8", "replace")
    return text[:900] or None


def ingest_key(raw: bytes) -> tuple[str, str | None, str]:
    """(key, message_id, raw sha256). The key is the Message-ID plus the hash of the bytes."""
    digest = hashlib.sha256(raw).hexdigest()
    message_id = header_message_id(raw)
    if message_id is None:
        return digest, None, digest
    key = hashlib.sha256(f"{message_id}\n{digest}".encode()).hexdigest()
    return key, message_id, digest
