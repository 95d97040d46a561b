"""Writing real configuration files for tests that run ticketd as a user would."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def write_config(directory: Path, db_url: str, account: Any = None, **sections: dict[str, Any]) -> Path:
    """A ticketd.toml in `directory`: the database, a storage folder, and the IMAP account if given."""
    directory.mkdir(parents=True, exist_ok=True)
    doc: dict[str, dict[str, Any]] = {
        "support": {"address": "support@casino.test", "name": "Casino Support"},
        "database": {"url": db_url},
        "storage": {"path": str(directory / "state")},
    }
    if account is not None:
        password_file = directory / "imap-password"
        password_file.write_text(account.password + "\n")
        password_file.chmod(0o600)  # a secret readable by others is refused
        doc["imap"] = {
            "host": account.host,
            "port": account.port,
            "tls": "none",
            "username": account.username,
            "password_file": str(password_file),
            "idle_timeout": 30,
        }
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    lines = []
    for name, values in doc.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    path = directory / "ticketd.toml"
    path.write_text("\n".join(lines))
    return path
