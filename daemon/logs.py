"""Logging set-up, done once by the CLI: one line per event, key=value or JSON."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        line = f"ts={when} level={record.levelname.lower()} logger={record.name} msg={_quote(record.getMessage())}"
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        line += "".join(f" {k}={_quote(str(v))}" for k, v in extra.items())
        if record.exc_info:
            line += " exc=" + _quote(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def _quote(text: str) -> str:
    text = text.replace("\n", "\\n")
    return f'"{text}"' if (" " in text or '"' in text or not text) else text


def setup(level: str = "INFO", fmt: str = "kv") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("imapclient", "alembic", "mail-parser", "mailparser", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
