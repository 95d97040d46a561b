from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from config import Settings, load_settings


def test_defaults_without_file_or_environment():
    s = load_settings(environ={})
    assert isinstance(s, Settings)
    assert s.support.address == "support@localhost"
    assert s.support.name == "Support"
    assert s.support.default_language == "en"
    assert s.storage.path == Path("/var/lib/ticketd")
    assert s.database.url == "sqlite:////var/lib/ticketd/ticketd.db"
    assert s.database.echo is False
    assert s.imap is None and s.smtp is None
    assert s.limits.max_message_bytes == 41943040 and s.limits.max_parts == 1000
    assert s.sla.first_response == timedelta(hours=24)
    assert s.sla.first_response_urgent == timedelta(hours=1)
    assert s.sla.resolution == timedelta(hours=72)
    assert s.classification.rules == ()
    assert (s.logging.format, s.logging.level) == ("kv", "INFO")
    assert s.metrics.listen == "" and s.metrics.address is None
    assert s.security.secret is None and s.security.keys == ()


def test_other_ticketd_variables_ignored():
    s = load_settings(environ={"TICKETD_FAILPOINT": "after-commit", "TICKETD_TEST_PG_URL": "x"})
    assert s.database.echo is False


def test_imap_defaults_when_section_given(write, env):
    path = write("t.toml", """
        [imap]
        host = "imap.example.com"
        username = "desk"
    """)
    imap = load_settings(path, env | {"TICKETD_IMAP__PASSWORD": "pw"}).imap
    assert imap is not None
    assert (imap.port, imap.tls, imap.auth, imap.folder) == (993, "implicit", "password", "INBOX")
    assert (imap.processed_folder, imap.quarantine_folder) == ("Processed", "Quarantine")
    assert (imap.idle_timeout, imap.poll_interval, imap.batch_size, imap.timeout) == (
        300, 30, 50, 30)
    assert imap.oauth2_token is None and imap.ca_file is None


def test_database_url_follows_storage_path(write, env):
    path = write("t.toml", '[storage]\npath = "state/desk"\n')
    assert load_settings(path, env).database.url == "sqlite:///state/desk/ticketd.db"


def test_environment_overrides_file_which_overrides_defaults(write, env):
    path = write("t.toml", """
        [imap]
        host = "imap.example.com"
        username = "desk"
        port = 143
        tls = "starttls"
    """)
    s = load_settings(path, env | {"TICKETD_IMAP__PORT": "1143", "TICKETD_IMAP__PASSWORD": "pw"})
    assert s.imap is not None
    assert s.imap.port == 1143  # environment over file
    assert s.imap.tls == "starttls"  # file over default
    assert s.imap.folder == "INBOX"  # default


def test_environment_names_are_case_insensitive(env):
    s = load_settings(environ=env | {"ticketd_Database__Echo": "true"})
    assert s.database.echo is True


def test_environment_alone_configures_a_section(env):
    s = load_settings(environ=env | {"TICKETD_SMTP__HOST": "localhost", "TICKETD_SMTP__TLS": "none",
                                     "TICKETD_SMTP__PORT": "25"})
    assert s.smtp is not None
    assert (s.smtp.host, s.smtp.port, s.smtp.tls) == ("localhost", 25, "none")
    assert s.imap is None


def test_file_named_by_TICKETD_CONFIG(write, env):
    path = write("t.toml", '[support]\nname = "Desk"\n')
    assert load_settings(environ=env | {"TICKETD_CONFIG": str(path)}).support.name == "Desk"


def test_secret_file_read_with_one_trailing_newline_stripped(write, env):
    secret = write("imap-password", "pa ss\n\n")
    path = write("t.toml", f"""
        [imap]
        host = "imap.example.com"
        username = "desk"
        password_file = "{secret}"
    """)
    imap = load_settings(path, env).imap
    assert imap is not None and imap.password is not None
    assert imap.password.get_secret_value() == "pa ss\n"
    assert imap.password_file == secret


def test_secret_in_environment_wins_over_secret_file(write, env):
    path = write("t.toml", """
        [smtp]
        host = "smtp.example.com"
        username = "desk"
        password_file = "does-not-exist"
    """)
    smtp = load_settings(path, env | {"TICKETD_SMTP__PASSWORD": "from-env"}).smtp
    assert smtp is not None and smtp.password is not None
    assert smtp.password.get_secret_value() == "from-env"


def test_xoauth2_token_from_file(write, env):
    token = write("token", "ya29.token\n")
    path = write("t.toml", f"""
        [imap]
        host = "imap.example.com"
        username = "desk"
        auth = "xoauth2"
        oauth2_token_file = "{token}"
    """)
    imap = load_settings(path, env).imap
    assert imap is not None and imap.password is None
    assert imap.oauth2_token is not None and imap.oauth2_token.get_secret_value() == "ya29.token"


def test_rotation_keys_one_per_line_newest_first(write):
    keys = write("secret", "newest-0123456789ab\nolder-0123456789ab\n\noldest-0123456789ab\n")
    s = load_settings(environ={"TICKETD_SECURITY__SECRET_FILE": str(keys)})
    assert s.security.keys == (b"newest-0123456789ab", b"older-0123456789ab",
                             b"oldest-0123456789ab")
    only = load_settings(environ={"TICKETD_SECURITY__SECRET": "only-0123456789abcdef"})
    assert only.security.keys == (b"only-0123456789abcdef",)


def test_sla_durations_parsed(write, env):
    path = write("t.toml", '[sla]\nfirst_response = "90m"\nresolution = "1d12h"\n')
    sla = load_settings(path, env).sla
    assert sla.first_response == timedelta(minutes=90)
    assert sla.resolution == timedelta(days=1, hours=12)


def test_classification_rules_from_file_and_environment(write, env):
    path = write("t.toml", """
        [[classification.rules]]
        category = "billing"
        priority = "high"
        keywords = ["invoice", "refund"]
    """)
    (rule,) = load_settings(path, env).classification.rules
    assert (rule.category, rule.priority, rule.keywords) == ("billing", "high",
                                                             ("invoice", "refund"))
    variable = {"TICKETD_CLASSIFICATION__RULES": '[{category = "outage", keywords = ["down"]}]'}
    (rule,) = load_settings(path, env | variable).classification.rules
    assert (rule.category, rule.priority, rule.keywords) == ("outage", "normal", ("down",))


def test_metrics_listen_on_loopback(env):
    s = load_settings(environ=env | {"TICKETD_METRICS__LISTEN": "127.0.0.1:9465"})
    assert s.metrics.address == ("127.0.0.1", 9465)
    assert load_settings(environ=env | {"TICKETD_METRICS__LISTEN": "[::1]:9465"}).metrics.address \
        == ("::1", 9465)


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mode, p.stat().st_size, p.stat().st_mtime_ns)
            for p in [root, *root.rglob("*")]}


def test_loading_touches_no_file(tmp_path, write):
    secret = write("secret", "key-0123456789abcdef\n")
    path = write("t.toml", f"""
        [storage]
        path = "{tmp_path / 'state'}"
        [security]
        secret_file = "{secret}"
    """)
    before = _tree(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # nothing relative created either
    try:
        load_settings(path, {})
    finally:
        os.chdir(cwd)
    assert _tree(tmp_path) == before
    assert not (tmp_path / "state").exists()
