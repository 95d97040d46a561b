"""What one mail may cost: checks on the raw bytes and on the parsed tree.

Python's email parser recurses once per nesting level and builds one object
per part, so a hostile mail is refused from its bytes before it is parsed:
cheap counts first, and only when those exceed a limit, a linear scan of
boundary lines that tracks nesting with an explicit stack. The parsed tree
is then checked again without recursion, which is the authoritative count.
Every check returns a short reason, or None when the mail is within limits.
"""

from __future__ import annotations

import re
from email.message import Message

from parsers.model import Limits

_MARKER = re.compile(rb"^(?:--([^\n]*)|content-type:[ \t]*((?:[^\n]|\n[ \t])*))", re.I | re.M)
_BOUNDARY = re.compile(rb"""boundary[ \t]*=[ \t]*(?:"([^"\n]*)"|([^\s;"]+))""", re.I)


def size_reason(raw: bytes, limits: Limits) -> str | None:
    if not raw or raw.isspace():  # isspace stops at the first other byte; strip would copy
        return "empty message"
    if len(raw) > limits.max_message_bytes:
        return f"message too large: {len(raw):,} bytes > {limits.max_message_bytes:,}"
    return None


def bytes_reason(raw: bytes, limits: Limits) -> str | None:
    """Refuse deep or many-part mail from LF-normalised bytes, before parsing."""
    # Every multipart/* or message/* header names its type: counting the names
    # (in C, on a lower-cased copy) bounds the containers from above.
    lowered = raw.lower()
    containers = lowered.count(b"multipart/") + lowered.count(b"message/")
    # Every part but the root starts after a boundary line or is a message/* body.
    part_bound = 1 + raw.count(b"\n--") + containers
    if containers + 1 <= limits.max_depth and part_bound <= limits.max_parts:
        return None
    return _scan_reason(raw, limits)


def _scan_reason(raw: bytes, limits: Limits) -> str | None:
    """Follow boundaries with a stack: linear, approximate, never recursive."""
    stack: list[bytes | None] = []  # a boundary, or None for a message/* level
    open_boundaries: dict[bytes, int] = {}
    parts = 1
    for match in _MARKER.finditer(raw):
        line, content_type = match.group(1), match.group(2)
        if content_type is not None:
            boundary = _container_boundary(content_type)
            if boundary is None:
                continue
            stack.append(boundary or None)
            if boundary:
                open_boundaries[boundary] = open_boundaries.get(boundary, 0) + 1
            else:
                parts += 1
            if len(stack) >= limits.max_depth:
                return depth_reason(limits)
        elif line is not None:
            parts += _boundary_line(line.rstrip(), stack, open_boundaries)
            if parts > limits.max_parts:
                return parts_reason(limits)
    return None


def _container_boundary(content_type: bytes) -> bytes | None:
    """b"" for message/*, the boundary for multipart/*, None for leaves."""
    kind = content_type.lstrip().lower()
    if kind.startswith(b"message/"):
        return b""
    if not kind.startswith(b"multipart/"):
        return None
    match = _BOUNDARY.search(content_type)
    return (match.group(1) or match.group(2)).strip() if match else None


def _boundary_line(line: bytes, stack: list[bytes | None], open_: dict[bytes, int]) -> int:
    """Close the levels a boundary line ends; 1 when it starts a new part."""
    closing = line.endswith(b"--") and open_.get(line[:-2], 0) > 0
    boundary = line[:-2] if closing else line
    if open_.get(boundary, 0) == 0:
        return 0
    while stack and stack[-1] != boundary:
        _pop(stack, open_)
    if closing:
        _pop(stack, open_)
        return 0
    return 1


def _pop(stack: list[bytes | None], open_: dict[bytes, int]) -> None:
    boundary = stack.pop()
    if boundary:
        open_[boundary] -= 1


def tree_reason(message: Message, limits: Limits) -> str | None:
    """Depth and part count of the parsed tree, walked with an explicit stack."""
    stack = [(message, 1)]
    parts = 0
    while stack:
        part, depth = stack.pop()
        parts += 1
        if parts > limits.max_parts:
            return parts_reason(limits)
        if depth > limits.max_depth:
            return depth_reason(limits)
        if part.is_multipart():  # get_payload() on a leaf would decode its text for nothing
            children = part.get_payload()
            stack.extend((child, depth + 1) for child in children if isinstance(child, Message))
    return None


def depth_reason(limits: Limits) -> str:
    return f"MIME nesting deeper than {limits.max_depth}"


def parts_reason(limits: Limits) -> str:
    return f"more than {limits.max_parts} MIME parts"
