from __future__ import annotations

import tomllib

from config import load_settings, render_effective
from config.schema import SECRET_FILES, section_models


def _configured(write, env):
    token = write("token", "tok-SECRET-abc\n")
    path = write("t.toml", f"""
        [database]
        url = "postgresql://desk:db-SECRET-pw@db.example.com/desk"
        [imap]
        host = "imap.example.com"
        username = "desk"
        auth = "xoauth2"
        oauth2_token_file = "{token}"
        [smtp]
        host = "localhost"
        tls = "none"
        port = 25
        [webhooks]
        url = "https://platform.example.com/hooks/ticketd?desk=7"
        [[classification.rules]]
        category = "billing"
        keywords = ["invoice", "refund"]
    """)
    secrets = {"TICKETD_SECURITY__SECRET": "key-SECRET-new-0123\nkey-SECRET-old-0123",
               "TICKETD_IMAP__PASSWORD": "pw-SECRET-imap",
               "TICKETD_WEBHOOKS__SECRET": "hook-SECRET-key-0123"}
    return load_settings(path, env | secrets)


def test_secrets_masked_in_render_effective(write, env):
    text = render_effective(_configured(write, env))
    assert "SECRET" not in text
    assert 'password = "***"' in text and 'oauth2_token = "***"' in text
    assert 'secret = "***"' in text
    assert 'url = "postgresql://desk:***@db.example.com/desk"' in text


def test_unset_secret_is_absent_from_render_effective(write, env):
    text = render_effective(_configured(write, env))
    smtp = text[text.index("[smtp]"):].split("\n\n")[0]
    assert "password =" not in smtp and "# password_file is unset" in smtp


def test_render_effective_is_toml_with_every_section_and_key(write, env):
    settings = _configured(write, env)
    rendered = tomllib.loads(render_effective(settings))
    for name, model in section_models().items():
        keys = set(rendered[name]) | {line.split()[1] for line in render_effective(settings)
                                      .splitlines() if line.endswith(" is unset")}
        unset_secrets = {key for key in SECRET_FILES.values()
                         if getattr(getattr(settings, name), key, "") is None}
        assert set(model.model_fields) - unset_secrets <= keys, name
    assert rendered["sla"]["first_response"] == "1d"
    assert rendered["smtp"]["port"] == 25
    assert rendered["webhooks"]["url"] == "https://platform.example.com/hooks/ticketd?desk=7"
    assert rendered["webhooks"]["events"] == [
        "self_exclusion.requested", "ticket.created", "sla.breached"]
    assert rendered["classification"]["rules"] == [
        {"category": "billing", "priority": "normal", "keywords": ["invoice", "refund"]}]


def test_render_effective_says_which_optional_sections_are_absent(env):
    text = render_effective(load_settings(environ=env))
    assert "# [imap] is not configured" in text and "# [smtp] is not configured" in text
