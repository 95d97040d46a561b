"""Secrets out of everything ticketd prints: the database URL parsed (never pattern-matched),
and every secret value masked in free text such as an error message from a driver."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

from pydantic import BaseModel, SecretStr
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

MASK = "***"
# libpq also takes secrets as query parameters: ?password=... and the client key's passphrase.
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})


def parse_url(url: str) -> URL | None:
    """The URL as SQLAlchemy reads it, or None when it cannot."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def safe_url(url: str) -> str:
    """The database URL with its password and any secret query parameter as ***."""
    parsed = parse_url(url)
    if parsed is None:
        return MASK  # not readable as a URL: nothing of it is known to be safe to show
    query = {k: (MASK if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in parsed.query.items()}
    shown = parsed.set(query=query)
    if parsed.password is not None:
        shown = shown.set(password=MASK)
    # `set()` keeps the mask verbatim; rendering would percent-encode it, so undo that.
    return shown.render_as_string(hide_password=False).replace(quote(MASK, safe=""), MASK)


def url_secrets(url: str) -> list[str]:
    """Every form in which the URL's secrets could appear in a message: decoded and as written."""
    parsed = parse_url(url)
    if parsed is None:
        return [url]  # an unreadable URL may be anything, a password included
    found = [parsed.password] if parsed.password else []
    found += [str(v) for k, v in parsed.query.items() if k.lower() in _SECRET_QUERY_KEYS]
    return found + [quote(s, safe="") for s in found] + [quote(s) for s in found] + \
        _password_as_written(url, parsed)


def _password_as_written(url: str, parsed: URL) -> list[str]:
    """The password exactly as the URL spells it (partly encoded, say), between "user:" and
    the "@" before the host."""
    rest = url.partition("://")[2]
    userinfo, at, _ = rest.partition(f"@{parsed.host or ''}")
    if not at or ":" not in userinfo:
        return []
    return [userinfo.partition(":")[2]]


def secrets_of(settings: BaseModel) -> list[str]:
    """Every secret the settings hold (each line of a multi-line key file on its own too)."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        tables = value if isinstance(value, tuple) else (value,)  # [[mailboxes]] too
        for section in tables:
            if isinstance(section, BaseModel):
                found += _secrets_of_section(section)
    return found


def _secrets_of_section(section: BaseModel) -> list[str]:
    found: list[str] = []
    for key in type(section).model_fields:
        value = getattr(section, key)
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
            found += [text, *(line.strip() for line in text.splitlines())]
        elif key == "url" and isinstance(value, str):
            found += url_secrets(value)
    return found


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of every secret replaced by ***, longest first."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
