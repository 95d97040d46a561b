"""The [imap]/[smtp] OAuth keys: a bad one names file, key and reason; presets fill the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_settings
from daemon.oauth import GOOGLE_SCOPES, MICROSOFT_SCOPES, OAuthClient

BASE = '[storage]\npath = "{state}"\n[imap]\nhost = "imap.example.com"\n' \
       'username = "support@example.com"\nauth = "oauth2"\n'


def _write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "ticketd.toml"
    path.write_text(BASE.format(state=tmp_path) + extra)
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    return [f"{p.key}: {p.reason}" for p in caught.value.problems]


def test_oauth2_without_a_client_id_names_the_key(tmp_path: Path) -> None:
    problems = _problems(_write(tmp_path, ""))
    assert any(p.startswith("imap.oauth2_client_id: required") for p in problems), problems


def test_a_token_url_in_clear_text_to_another_host_is_refused(tmp_path: Path) -> None:
    extra = 'oauth2_client_id = "x"\noauth2_token_url = "http://idp.example.com/token"\n'
    problems = _problems(_write(tmp_path, extra))
    assert any(p.startswith("imap.oauth2_token_url:") and "loopback" in p
               for p in problems), problems


@pytest.mark.parametrize("url", [
    "http://evil.example#@127.0.0.1/token",  # the "@" is in the fragment
    "http://evil.example\\@127.0.0.1/token",
    "http://127.0.0.1.evil.example/token",
    "http://evil.example/?@127.0.0.1",
])
def test_a_clear_text_url_that_only_looks_loopback_is_refused(tmp_path: Path,
                                                              url: str) -> None:
    extra = f'oauth2_client_id = "x"\noauth2_token_url = \'{url}\'\n'
    problems = _problems(_write(tmp_path, extra))
    assert any(p.startswith("imap.oauth2_token_url:") for p in problems), problems


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/token", "http://[::1]:9/t",
                                 "http://localhost/token", "https://idp.example.com/t"])
def test_loopback_and_https_token_urls_are_taken(tmp_path: Path, url: str) -> None:
    extra = f'oauth2_client_id = "x"\noauth2_token_url = \'{url}\'\n'
    assert load_settings(_write(tmp_path, extra), {}).imap.oauth2_token_url == url


@pytest.mark.parametrize("provider, scopes, token_url", [
    ("microsoft", MICROSOFT_SCOPES,
     "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"),
    ("google", GOOGLE_SCOPES, "https://oauth2.googleapis.com/token"),
])
def test_presets_fill_endpoints_and_scopes(tmp_path: Path, provider: str,
                                           scopes: tuple[str, ...], token_url: str) -> None:
    extra = f'oauth2_provider = "{provider}"\noauth2_client_id = "app"\n' \
            f'oauth2_tenant = "contoso.com"\n'
    settings = load_settings(_write(tmp_path, extra), {})
    client = OAuthClient.from_section("imap", settings.imap)
    assert (client.token_url, client.scopes) == (token_url, scopes)
    assert bool(client.device_url) == (provider == "microsoft")  # Google: browser login
