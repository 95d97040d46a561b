"""Secrets stay secret: permissions of secret files, key length, and masking whatever the
characters of a password."""

from __future__ import annotations

import pytest

from config import ConfigError, load_settings, render_effective
from config.redact import redact, safe_url, secrets_of


def _error(path, environ) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ)
    return str(caught.value)


@pytest.mark.parametrize(("mode", "who"), [(0o644, "group and others"), (0o640, "its group"),
                                           (0o604, "group and others")])
def test_a_secret_file_readable_by_others_is_refused_with_the_chmod_to_run(write, env, mode, who):
    secret = write("imap-password", "Pa55word-imap\n")
    secret.chmod(mode)
    error = _error(None, env | {"TICKETD_IMAP__HOST": "imap.example.com",
                                "TICKETD_IMAP__USERNAME": "desk",
                                "TICKETD_IMAP__PASSWORD_FILE": str(secret)})
    assert error == (f"environment TICKETD_IMAP__PASSWORD_FILE: imap.password_file: {secret} is "
                     f"readable by {who} (mode {mode:04o}): a secret must be readable by the "
                     f"service only; run: chmod 600 {secret}")
    assert "Pa55" not in error


def test_a_secret_file_of_the_service_alone_is_read(write, env):
    secret = write("imap-password", "Pa55word-imap\n")
    secret.chmod(0o400)
    settings = load_settings(None, env | {"TICKETD_IMAP__HOST": "imap.example.com",
                                          "TICKETD_IMAP__USERNAME": "desk",
                                          "TICKETD_IMAP__PASSWORD_FILE": str(secret)})
    assert settings.imap.password.get_secret_value() == "Pa55word-imap"


@pytest.mark.parametrize(("keys", "line", "size"), [("abc", 1, 3),
                                                    ("a-long-enough-key-0123\nshort-key", 2, 9),
                                                    ("fifteen-bytes-k", 1, 15)])
def test_a_signing_key_under_16_bytes_is_refused_with_the_reason(write, keys, line, size):
    secret = write("secret", keys + "\n")
    error = _error(None, {"TICKETD_SECURITY__SECRET_FILE": str(secret)})
    assert f"security.secret: signing key on line {line} is {size} bytes, under the 16" in error
    assert "head -c 32 /dev/urandom" in error
    assert "short-key" not in error and "abc" not in error


def test_a_signing_key_of_16_bytes_is_taken():
    settings = load_settings(None, {"TICKETD_SECURITY__SECRET": "sixteen-bytes-k!"})
    assert settings.security.keys == (b"sixteen-bytes-k!",)


URLS = [  # (as written, the password SQLAlchemy reads, what check-config shows)
    ("postgresql://desk:p%40ss%2Fw0rd@db.example.com/desk", "p@ss/w0rd",
     "postgresql://desk:***@db.example.com/desk"),
    ("postgresql://desk:pa/ss:w0rd@db.example.com:5433/desk", "pa/ss:w0rd",
     "postgresql://desk:***@db.example.com:5433/desk"),
    ("postgresql+psycopg://desk:p%25%26*w0rd@db.example.com/desk?sslmode=require", "p%&*w0rd",
     "postgresql+psycopg://desk:***@db.example.com/desk?sslmode=require"),
    ("postgresql://desk@db.example.com/desk?password=p%40ss%26w0rd&sslmode=require", "p@ss&w0rd",
     "postgresql://desk@db.example.com/desk?password=***&sslmode=require"),
]


@pytest.mark.parametrize(("url", "password", "shown"), URLS)
def test_check_config_masks_the_database_password_whatever_it_holds(env, url, password, shown):
    settings = load_settings(None, env | {"TICKETD_DATABASE__URL": url})
    text = render_effective(settings)
    assert f'url = "{shown}"' in text
    for piece in ("p@ss", "w0rd", "%40", "p%25"):
        assert piece not in text
    assert password in secrets_of(settings)
    assert safe_url(url) == shown


def test_a_raw_at_sign_in_the_database_password_is_refused_without_echoing_it(env):
    # Read as written, "ss@db.example.com" would be the host: every resolver error would show it.
    error = _error(None, env | {"TICKETD_DATABASE__URL": "postgresql://desk:p@ss@db.example.com/d"})
    assert error.startswith("environment TICKETD_DATABASE__URL: database.url: has an \"@\" in "
                            "its password: write it as %40")
    assert "ss@db" not in error and "p@ss" not in error


def test_redact_masks_every_form_of_every_secret(env):
    url = "postgresql://desk:p%40ss%2Fw0rd@db.example.com/desk"
    keys = "key-one-0123456789\nkey-two-0123456789"
    settings = load_settings(None, env | {"TICKETD_DATABASE__URL": url,
                                          "TICKETD_SECURITY__SECRET": keys})
    secrets = secrets_of(settings)
    text = f"failed: {url} / p@ss/w0rd / key-two-0123456789"
    assert redact(text, secrets) == "failed: postgresql://desk:***@db.example.com/desk / *** / ***"


def test_a_secret_set_in_the_file_variable_by_mistake_is_not_repeated(env):
    error = _error(None, env | {"TICKETD_IMAP__HOST": "imap.example.com",
                                "TICKETD_IMAP__USERNAME": "desk",
                                "TICKETD_IMAP__PASSWORD_FILE": "Pa55word"})
    assert error == ("environment TICKETD_IMAP__PASSWORD_FILE: imap.password_file: cannot read "
                     "the file it names: No such file or directory")


def test_systemd_credentials_are_read_whatever_mode_systemd_gives_them(write, tmp_path):
    # $CREDENTIALS_DIRECTORY is the service's own; systemd may grant the user read access by
    # an ACL, which shows in the group bits: the mode check is for paths the operator manages.
    folder = tmp_path / "credentials"
    folder.mkdir(mode=0o500)
    (folder / "secret").write_text("key-0123456789abcdef\n")
    (folder / "secret").chmod(0o440)
    path = write("t.toml", '[security]\nsecret_file = "credential:secret"\n')
    settings = load_settings(path, {"CREDENTIALS_DIRECTORY": str(folder)})
    assert settings.security.keys == (b"key-0123456789abcdef",)
