"""Logging set-up, done once by the CLI: one line per event, logfmt ("kv") or JSON.

A call site passes its facts as fields, never inside the message, so that a log store can
query them: ``log.info("ingested", extra={"fields": {"key": key, "ticket": 7}})``. The
message stays a constant phrase. (Any other ``extra`` attribute is a field too.)

When stderr is the journal (systemd sets JOURNAL_STREAM to its device:inode), each line
starts with the sd-daemon(3) priority, ``<3>`` for an error, so that ``journalctl -p err``
finds it, and carries no timestamp of its own: the journal stamps every line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, TextIO

from config.redact import redact

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "fields", "taskName"}

# sd-daemon(3): SD_CRIT <2>, SD_ERR <3>, SD_WARNING <4>, SD_INFO <6>, SD_DEBUG <7>.
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
             (logging.INFO, 6))
# A logfmt value that needs no quotes: no space, quote, backslash, "=" or control character.
_BARE = re.compile(r"[^\s\"\\=\x00-\x1f\x7f]+")
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (DEBUG and below: 7)."""
    return next((prio for floor, prio in _PRIORITY if levelno >= floor), 7)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The event's fields: ``extra={"fields": {...}}`` and any other extra attribute."""
    found = {k: v for k, v in vars(record).items() if k not in _STANDARD}
    found.update(getattr(record, "fields", None) or {})
    return found


class _Formatter(logging.Formatter):
    def __init__(self, journal: bool = False, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.journal = journal
        self.secrets = tuple(secrets)  # masked wherever they appear, whoever wrote them

    def document(self, record: logging.LogRecord) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if not self.journal:
            doc["ts"] = datetime.fromtimestamp(record.created, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ")
        doc.update(level=record.levelname.lower(), logger=record.name, msg=record.getMessage())
        for key, value in record_fields(record).items():
            doc.setdefault(key, value)  # a field never hides ts, level, logger or msg
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if self.secrets:  # a value printed as text is masked as text
            doc = {k: v if isinstance(v, int | float | None) else redact(str(v), self.secrets)
                   for k, v in doc.items()}
        return doc

    def format(self, record: logging.LogRecord) -> str:
        line = self.render(self.document(record))
        return f"<{priority(record.levelno)}>{line}" if self.journal else line

    def render(self, doc: dict[str, Any]) -> str:
        raise NotImplementedError


class KeyValueFormatter(_Formatter):
    """logfmt: ``key=value`` pairs; a value with a space, quote, backslash, "=" or control
    character is a JSON string (``"a \\"b\\"\\nc"``), so every line parses back exactly."""

    def render(self, doc: dict[str, Any]) -> str:
        return " ".join(f"{_key(k)}={logfmt_value(v)}" for k, v in doc.items())


class JsonFormatter(_Formatter):
    def render(self, doc: dict[str, Any]) -> str:
        return json.dumps(doc, ensure_ascii=False, default=str)


def logfmt_value(value: Any) -> str:
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def _key(name: str) -> str:
    return _KEY_CHARS.sub("_", str(name)) or "_"


def failure_fields(err: BaseException, depth: int = 6) -> dict[str, str]:
    """What a log may say of a failure while mail is in hand: the exception types (with
    their causes) and where it happened, never their messages. A database error's text
    carries the statement's parameters and the driver's DETAIL (a player's text, a card
    number); a parser's may quote the mail. Invariant 8: no message body in logs."""
    chain: list[str] = []
    seen: BaseException | None = err
    while seen is not None and len(chain) < 5:
        chain.append(type(seen).__name__)
        seen = seen.__cause__ or seen.__context__
    frames = traceback.extract_tb(err.__traceback__)[-depth:]
    where = "; ".join(f"{PurePath(f.filename).name}:{f.lineno} {f.name}" for f in frames)
    return {"error": " <- ".join(chain), "at": where}


def stderr_is_journal(stream: TextIO | None = None, environ: dict[str, str] | None = None) -> bool:
    """True when `stream` (stderr) is the journal stream systemd named in JOURNAL_STREAM."""
    stream = sys.stderr if stream is None else stream
    wanted = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, sep, inode = wanted.partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # closed, or not a real file
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def for_stderr(text: str, level: int = logging.ERROR) -> str:
    """A message the CLI writes to stderr itself (a configuration error at start): with the
    journal's priority on every line when stderr is the journal, so `-p err` finds it too."""
    if not stderr_is_journal():
        return text
    return "\n".join(f"<{priority(level)}>{line}" for line in text.splitlines())


def mask_also(secrets: Iterable[str]) -> None:
    """Add secrets to those masked by the handlers `setup` installed: a reload may bring a
    new password or key, and the old ones stay masked (an old connection's error may still
    carry them)."""
    new = tuple(secrets)
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if isinstance(formatter, _Formatter):
            formatter.secrets = tuple(dict.fromkeys((*formatter.secrets, *new)))


def setup(level: str = "INFO", fmt: str = "kv", secrets: Iterable[str] = ()) -> None:
    """Log to stderr; `secrets` (config.redact.secrets_of) are masked in every line."""
    journal = stderr_is_journal()
    formatter = JsonFormatter if fmt == "json" else KeyValueFormatter
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(journal, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("imapclient", "alembic", "mail-parser", "mailparser", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
