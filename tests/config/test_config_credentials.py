"""A *_file key given as "credential:NAME" reads the file systemd's LoadCredential= put in
$CREDENTIALS_DIRECTORY; an absolute path still means that path."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import config
from config import ConfigError, load_settings

EXAMPLE = Path(config.__file__).with_name("ticketd.example.toml")

SMTP = """
    [smtp]
    host = "127.0.0.1"
    tls = "none"
    username = "desk"
    password_file = "credential:smtp-password"
    [security]
    secret_file = "credential:secret"
"""


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    folder = tmp_path / "credentials"
    folder.mkdir()
    (folder / "smtp-password").write_text("smtp-pw\n")
    (folder / "secret").write_text("key-0123456789abcdef\n")
    (folder / "master-key").write_text(base64.b64encode(bytes(range(32))).decode() + "\n")
    return folder


def test_credential_names_a_file_in_the_credentials_directory(write, credentials):
    settings = load_settings(write("t.toml", SMTP), {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert settings.smtp is not None and settings.smtp.password is not None
    assert settings.smtp.password.get_secret_value() == "smtp-pw"
    assert settings.security.keys == (b"key-0123456789abcdef",)


def test_the_example_loads_from_credentials_alone(credentials):
    (credentials / "imap-password").write_text("imap-pw\n")
    settings = load_settings(EXAMPLE, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert settings.imap is not None and settings.imap.password is not None
    assert settings.imap.password.get_secret_value() == "imap-pw"
    assert settings.privacy.master_keys == (bytes(range(32)),)  # the unit's master-key


def test_absolute_paths_still_work_beside_credentials(write, credentials, tmp_path):
    plain = write("plain-secret", "plain-key-0123456789\n")
    text = SMTP.replace('"credential:secret"', f'"{plain}"')
    settings = load_settings(write("t.toml", text), {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert settings.security.keys == (b"plain-key-0123456789",)


def test_without_credentials_directory_the_error_names_key_and_variable(write):
    with pytest.raises(ConfigError) as caught:
        load_settings(write("t.toml", SMTP), {})
    text = str(caught.value)
    assert "smtp.password_file" in text and "security.secret_file" in text
    assert "$CREDENTIALS_DIRECTORY is not set" in text
    assert "LoadCredential=smtp-password:" in text


def test_a_credential_the_unit_does_not_load_is_named(write, credentials):
    (credentials / "secret").unlink()
    with pytest.raises(ConfigError) as caught:
        load_settings(write("t.toml", SMTP), {"CREDENTIALS_DIRECTORY": str(credentials)})
    text = str(caught.value)
    assert "security.secret_file" in text and "no credential secret" in text
    assert "smtp.password_file" not in text


@pytest.mark.parametrize("name", ["", "../secret", "a/b", ".."])
def test_a_credential_name_is_one_file_name(write, credentials, name):
    (credentials.parent / "secret").write_text("outside-0123456789\n")
    text = SMTP.replace('"credential:secret"', f'"credential:{name}"')
    with pytest.raises(ConfigError) as caught:
        load_settings(write("t.toml", text), {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert "security.secret_file" in str(caught.value)
    assert "one file name" in str(caught.value)
