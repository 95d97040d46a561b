"""Values that leave the parsers: what the rest of ticketd knows of an incoming mail."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property


@dataclass(frozen=True)
class Address:
    """One mailbox: lower-cased address, decoded display name."""

    addr: str
    name: str = ""


@dataclass(frozen=True)
class Attachment:
    filename: str  # sanitised: no path, no control characters, never empty
    content_type: str  # lower-case "type/subtype"
    payload: bytes = field(repr=False)
    inline: bool = False
    content_id: str | None = None

    @property
    def size(self) -> int:
        return len(self.payload)

    @cached_property
    def sha256(self) -> str:
        # Hashed once: screening, the file store and the attachment rows all ask for it.
        return hashlib.sha256(self.payload).hexdigest()


@dataclass(frozen=True)
class Limits:
    """Bounds on what one mail may cost; exceeding one quarantines the mail."""

    max_message_bytes: int = 40 * 1024 * 1024
    max_attachments: int = 100
    max_attachment_bytes: int = 30 * 1024 * 1024
    max_depth: int = 30
    max_parts: int = 1000


@dataclass(frozen=True)
class InboundMail:
    message_id: str | None  # without angle brackets
    in_reply_to: tuple[str, ...]  # Message-IDs, without angle brackets
    references: tuple[str, ...]  # Message-IDs, oldest first, without angle brackets
    sender: Address | None  # From (first mailbox), None when absent or unparseable
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    subject: str  # decoded, single line
    date: datetime | None  # timezone-aware (UTC) or None
    text: str  # full plain text; HTML-only mail converted to readable text
    html: str | None
    attachments: tuple[Attachment, ...]
    headers: tuple[tuple[str, str], ...]  # (lower-case name, decoded single-line value), in order
    defects: tuple[str, ...]  # parser defect class names, for the record
    raw_size: int

    def header(self, name: str) -> str | None:
        """First value of a header, or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_all(self, name: str) -> tuple[str, ...]:
        name = name.lower()
        return tuple(value for key, value in self.headers if key == name)
