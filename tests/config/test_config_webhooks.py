"""[webhooks]: where events go, the key that signs them, which are sent; every mistake named
with its file, key and reason, and the key never repeated anywhere."""

from __future__ import annotations

import logging

import pytest

from config import ConfigError, load_settings
from config.redact import secrets_of
from daemon import logs

KEY = "hook-key-0123456789abcdef"


def _error(path, environ) -> str:  # noqa: ANN001
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ)
    return str(caught.value)


def test_the_section_loads_from_a_credential(write, env, tmp_path):
    folder = tmp_path / "credentials"
    folder.mkdir()
    (folder / "webhook-secret").write_text(f"{KEY}\nold-key-0123456789abcdef\n")
    path = write("t.toml", """
        [webhooks]
        url = "https://platform.example.com/hooks/ticketd"
        secret_file = "credential:webhook-secret"
        events = ["self_exclusion.requested"]
    """)
    settings = load_settings(path, env | {"CREDENTIALS_DIRECTORY": str(folder)})
    hooks = settings.webhooks
    assert hooks is not None and hooks.keys == (KEY.encode(), b"old-key-0123456789abcdef")
    assert hooks.events == ("self_exclusion.requested",) and hooks.timeout == 10
    assert settings.smtp is None  # webhooks need no mail server


@pytest.mark.parametrize(("url", "reason"), [
    ("http://platform.example.com/hooks", "must be https:// unless the host is a loopback"),
    ("ftp://platform.example.com/hooks", 'must be an "https://host/path" URL'),
    ("https://desk:pw@platform.example.com/h", "must not carry credentials"),
])
def test_a_bad_url_is_named_and_not_repeated(write, env, url, reason):
    path = write("t.toml", f'[webhooks]\nurl = "{url}"\n')
    error = _error(path, env | {"TICKETD_WEBHOOKS__SECRET": KEY})
    assert error.startswith(f"{path}: webhooks.url: {reason}") and url not in error


def test_http_to_loopback_is_accepted(write, env):
    path = write("t.toml", '[webhooks]\nurl = "http://127.0.0.1:8080/hooks"\n')
    settings = load_settings(path, env | {"TICKETD_WEBHOOKS__SECRET": KEY})
    assert settings.webhooks is not None


def test_the_key_is_required_and_long_enough(write, env):
    path = write("t.toml", '[webhooks]\nurl = "https://platform.example.com/hooks"\n')
    assert "webhooks.secret_file: required" in _error(path, env)
    short = _error(path, env | {"TICKETD_WEBHOOKS__SECRET": "short-key"})
    assert "under the 16" in short and "short-key" not in short


def test_an_unknown_event_is_named(write, env):
    path = write("t.toml", '[webhooks]\nurl = "https://p.example.com/h"\nevents = ["x.y"]\n')
    assert "webhooks.events[0]: must be one of" in _error(
        path, env | {"TICKETD_WEBHOOKS__SECRET": KEY})


def test_the_key_is_masked_in_every_log_line(write, env, capsys):
    path = write("t.toml", '[webhooks]\nurl = "https://platform.example.com/hooks"\n')
    settings = load_settings(path, env | {"TICKETD_WEBHOOKS__SECRET": KEY})
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup("INFO", "kv", secrets_of(settings))
        logging.getLogger("test").error("platform said", extra={"fields": {"echo": KEY}})
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    line = capsys.readouterr().err
    assert "platform said" in line and KEY not in line and "***" in line
