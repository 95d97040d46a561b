"""Byte-level repairs made before parsing, each one recorded as a defect name.

Python's parser ends the header block at the first line that is neither a
header nor a continuation, so one gateway's junk line or one unindented
continuation turns all later headers (From, Subject, Content-Type) into body.
"""

from __future__ import annotations

import re

_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_MBOX_FROM = b"From "
# Leading lines that some gateways put before the headers ("---- Original email message ----").
MAX_JUNK_LINES = 3
_STRAY_LINE = re.compile(rb"\n(?![ \t\n]|[!-9;-~]+[ \t]*:)")


def normalise_newlines(raw: bytes) -> bytes:
    """CR-only and CRLF mail must parse exactly like LF mail.

    A binary (not base64) attachment would change, but no mail transport
    keeps raw CR and LF bytes intact anyway.
    """
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in raw else raw


def strip_junk_lines(data: bytes) -> bytes | None:
    """The message from its first header line, or None when it has no headers.

    An mbox "From " line is kept: the parser knows it.
    """
    pos = 0
    for _ in range(MAX_JUNK_LINES + 1):
        if _HEADER_LINE.match(data, pos) or data.startswith(_MBOX_FROM, pos):
            return data[pos:]
        end = data.find(b"\n", pos)
        if end < 0 or end == pos:  # a blank line: headers would have come first
            return None
        pos = end + 1
    return None


def join_stray_header_lines(data: bytes) -> bytes | None:
    """Indent stray lines that sit between header lines, or None when there are none.

    Only lines followed by more headers are touched: a stray line after the
    last header is where a body begins without the blank line.
    """
    end = data.find(b"\n\n")
    end = len(data) if end < 0 else end
    if not _STRAY_LINE.search(data, 0, end):
        return None
    lines = data[:end].split(b"\n")
    last_header = max(i for i, line in enumerate(lines) if i == 0 or _HEADER_LINE.match(line))
    changed = False
    for i in range(1, last_header):
        line = lines[i]
        if line and line[:1] not in b" \t" and not _HEADER_LINE.match(line):
            lines[i] = b" " + line
            changed = True
    return b"\n".join(lines) + data[end:] if changed else None
