from __future__ import annotations

import pytest

from config import EX_CONFIG, ConfigError, load_settings

IMAP = """
    [imap]
    host = "{host}"
    username = "desk"
    tls = "{tls}"
"""


def _error(path, environ) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ)
    return str(caught.value)


def test_ex_config_is_sysexits_value():
    assert EX_CONFIG == 78


@pytest.mark.parametrize(("section", "key", "value", "reason"), [
    ("imap", "port", "99999", "imap.port: must be between 1 and 65535 (got 99999)"),
    ("imap", "tls", '"tls"', 'imap.tls: must be one of "implicit", "starttls", "none" (got "tls")'),
    ("sla", "resolution", '"3 days"', 'sla.resolution: must be a duration like "90m"'),
    ("limits", "max_parts", '"many"', "limits.max_parts: must be a valid integer"),
    ("limits", "max_depth", "0", "limits.max_depth: must be greater than 0 (got 0)"),
    ("database", "echo", '"sometimes"', "database.echo: must be a valid boolean"),
    ("logging", "level", '"LOUD"', 'logging.level: must be one of "DEBUG", "INFO"'),
    ("support", "addres", '"x@example.com"', "support.addres: unknown key"),
])
def test_bad_value_in_file_names_file_key_and_reason(write, env, section, key, value, reason):
    path = write("ticketd.toml", f"[{section}]\n{key} = {value}\n")
    imap = {"TICKETD_IMAP__HOST": "imap.example.com", "TICKETD_IMAP__USERNAME": "desk",
            "TICKETD_IMAP__PASSWORD": "pw"}
    assert _error(path, env | imap).startswith(f"{path}: {reason}")


def test_bad_value_in_environment_names_the_variable(env):
    error = _error(None, env | {"TICKETD_IMAP__HOST": "::1", "TICKETD_IMAP__USERNAME": "desk",
                                "TICKETD_IMAP__PASSWORD": "pw", "TICKETD_IMAP__TLS": "ssl"})
    assert error == ('environment TICKETD_IMAP__TLS: imap.tls: must be one of "implicit", '
                     '"starttls", "none"')


@pytest.mark.parametrize("variable", ["TICKETD_IMAP__PORT", "TICKETD_IMAP__TLS",
                                      "TICKETD_SLA__FIRST_RESPONSE", "TICKETD_DATABASE__ECHO",
                                      "TICKETD_SUPPORT__ADDRESS", "TICKETD_DATABASE__URL"])
def test_a_password_in_the_wrong_variable_is_not_repeated(env, variable):
    # The environment is where secrets are passed: a refused value from it may be one.
    password = "Pa55word with spaces/@%40"
    error = _error(None, env | {"TICKETD_IMAP__HOST": "::1", "TICKETD_IMAP__USERNAME": "desk",
                                "TICKETD_IMAP__PASSWORD": "pw", variable: password})
    assert error.startswith(f"environment {variable}: ")
    assert "Pa55" not in error and "spaces" not in error


def test_a_refused_secret_or_unknown_key_in_the_file_is_not_repeated(write, env):
    path = write("ticketd.toml", '[imap]\npasswd = "Pa55word"\n[database]\nurl = "mysql://u:Pa55@h/d"\n')
    error = _error(path, env)
    assert "imap.passwd: unknown key" in error and "database.url: must be" in error
    assert "Pa55" not in error


def test_environment_variable_naming_unknown_key_is_named(env):
    error = _error(None, env | {"TICKETD_IMAP__PROT": "143"})
    assert error.startswith("environment TICKETD_IMAP__PROT: no such setting")
    error = _error(None, env | {"ticketd_imap_port": "143"})  # one underscore: a typo
    assert error.startswith("environment ticketd_imap_port: no such setting")
    error = _error(None, env | {"TICKETD_IMAGE__PORT": "143"})
    assert error.startswith("environment TICKETD_IMAGE__PORT: no such setting")


def test_missing_password_file_names_file_key_and_os_reason(write, tmp_path, env):
    missing = tmp_path / "smtp-password"
    path = write("ticketd.toml", f"""
        [smtp]
        host = "smtp.example.com"
        username = "desk"
        password_file = "{missing}"
    """)
    assert _error(path, env) == (
        f"{path}: smtp.password_file: cannot read {missing}: No such file or directory")


def test_empty_secret_file_refused(write, env):
    empty = write("pw", "\n")
    error = _error(None, env | {"TICKETD_SMTP__HOST": "smtp.example.com",
                                "TICKETD_SMTP__USERNAME": "desk",
                                "TICKETD_SMTP__PASSWORD_FILE": str(empty)})
    assert error == f"environment TICKETD_SMTP__PASSWORD_FILE: smtp.password_file: {empty} is empty"


def test_unknown_key_value_not_repeated(write, env):
    path = write("ticketd.toml", '[imap]\nhost = "localhost"\nusername = "u"\npasswd = "hunter2"\n')
    error = _error(path, env | {"TICKETD_IMAP__PASSWORD": "pw"})
    assert error == f"{path}: imap.passwd: unknown key"


def test_password_in_toml_refused(write, env):
    path = write("ticketd.toml", """
        [imap]
        host = "imap.example.com"
        username = "desk"
        password = "hunter2"
    """)
    error = _error(path, env)
    assert error.startswith(f"{path}: imap.password: secrets are not read from the "
                            "configuration file: use password_file")
    assert "hunter2" not in error


def test_missing_password_refused_for_password_auth(write, env):
    path = write("ticketd.toml", IMAP.format(host="imap.example.com", tls="implicit"))
    assert _error(path, env) == (f'{path}: imap.password_file: required when auth = "password" '
                                 "(or set TICKETD_IMAP__PASSWORD)")


def test_missing_token_refused_for_xoauth2(env):
    error = _error(None, env | {"TICKETD_IMAP__HOST": "imap.example.com",
                                "TICKETD_IMAP__USERNAME": "desk", "TICKETD_IMAP__AUTH": "xoauth2",
                                "TICKETD_IMAP__PASSWORD": "not a token"})
    assert error.startswith('environment: imap.oauth2_token_file: required when auth = "xoauth2"')


def test_smtp_without_signing_keys_refused():
    error = _error(None, {"TICKETD_SMTP__HOST": "localhost", "TICKETD_SMTP__TLS": "none"})
    assert error.startswith("environment: security.secret_file: required when [smtp] is "
                            "configured: a file of signing keys")


@pytest.mark.parametrize("host", ["imap.example.com", "192.0.2.1", "localhost.example.com"])
def test_tls_none_to_non_loopback_refused(write, env, host):
    path = write("ticketd.toml", IMAP.format(host=host, tls="none"))
    assert _error(path, env | {"TICKETD_IMAP__PASSWORD": "pw"}).startswith(
        f'{path}: imap.tls: "none" is allowed only when host is a loopback address')


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_tls_none_to_loopback_allowed(write, env, host):
    path = write("ticketd.toml", IMAP.format(host=host, tls="none"))
    imap = load_settings(path, env | {"TICKETD_IMAP__PASSWORD": "pw"}).imap
    assert imap is not None and imap.tls == "none"


def test_metrics_listen_off_loopback_refused(env):
    error = _error(None, env | {"TICKETD_METRICS__LISTEN": "0.0.0.0:9465"})
    assert error.startswith("environment TICKETD_METRICS__LISTEN: metrics.listen: must listen on "
                            "a loopback address")


def test_several_errors_reported_together_one_per_line(write, tmp_path, env):
    path = write("ticketd.toml", f"""
        [imap]
        host = "imap.example.com"
        username = "desk"
        port = 0
        password_file = "{tmp_path / 'nope'}"
        [sla]
        resolution = "soon"
        [limits]
        max_attachments = -1
    """)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env | {"TICKETD_LOGGING__FORMAT": "xml"})
    lines = str(caught.value).splitlines()
    assert [problem.key for problem in caught.value.problems] == [
        "imap.password_file", "imap.port", "limits.max_attachments", "sla.resolution",
        "logging.format"]
    assert len(lines) == 5
    assert lines[-1].startswith("environment TICKETD_LOGGING__FORMAT: logging.format: ")


def test_toml_syntax_error_names_file_and_line(write, env):
    path = write("ticketd.toml", '[support]\nname = "Desk"\naddress support@example.com\n')
    error = _error(path, env)
    assert error.startswith(f"{path}: not valid TOML: ")
    assert "line 3" in error


def test_missing_config_file_named(tmp_path, env):
    path = tmp_path / "ticketd.toml"
    assert _error(path, env) == f"{path}: cannot read: No such file or directory"


def test_error_in_list_of_tables_names_the_item(write, env):
    path = write("ticketd.toml", """
        [[classification.rules]]
        category = "billing"
        keywords = ["invoice"]
        [[classification.rules]]
        category = "outage"
        priority = "critical"
        keywords = ["down"]
    """)
    assert _error(path, env).startswith(
        f'{path}: classification.rules[1].priority: must be one of "low", "normal"')


def test_smtp_username_without_secret_refused(env):
    error = _error(None, env | {"TICKETD_SMTP__HOST": "smtp.example.com",
                                "TICKETD_SMTP__USERNAME": "desk"})
    assert error.startswith("environment: smtp.password_file: required when username is set")
