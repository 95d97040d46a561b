"""`ticketd oauth login MAILBOX` and `ticketd oauth status`: the refresh tokens of the
mailboxes whose `auth = "oauth2"`.

daemon/cli.py calls `register(main)`; the shared plumbing comes from daemon.cli_common.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from config import EX_CONFIG, Settings
from daemon.cli_common import settings_or_exit
from daemon.oauth import OAuthClient, OAuthProblem, store_for
from daemon.oauth_login import browser_login, device_login
from storage.tokens import TokenFileError

MAILBOXES = ("imap", "smtp")


def register(main: click.Group) -> None:
    main.add_command(oauth_command)


@click.group("oauth")
def oauth_command() -> None:
    """OAuth 2 logins of the mailboxes (Microsoft 365, Gmail)."""


def _logins(settings: Settings) -> dict:  # noqa: ANN202 - name -> ImapSettings | SmtpSettings
    """Every section that logs in with OAuth 2: each mailbox watched ("imap" for [imap], a
    [[mailboxes]] name), and "smtp"."""
    found = {box.name: box for box in settings.all_mailboxes}
    if settings.smtp is not None:
        found["smtp"] = settings.smtp
    return {name: section for name, section in found.items() if section.auth == "oauth2"}


def _section(settings: Settings, mailbox: str):  # noqa: ANN202 - ImapSettings | SmtpSettings
    """The section MAILBOX names: "imap", "smtp", a [[mailboxes]] name, or the account one
    of them logs in as."""
    oauth = _logins(settings)
    named = [mailbox] if mailbox in oauth or mailbox in MAILBOXES else [
        m for m, section in oauth.items() if section.username == mailbox]
    if len(named) > 1:
        click.echo(f"ticketd: {', '.join(named)} all log in as {mailbox}: say which "
                   f"(each keeps its own login)", err=True)
        sys.exit(EX_CONFIG)
    if not named or named[0] not in oauth:
        click.echo(f"ticketd: no mailbox {mailbox!r} with auth = \"oauth2\" "
                   f"(configured: {', '.join(oauth) or 'none'})", err=True)
        sys.exit(EX_CONFIG)
    return named[0], oauth[named[0]]


@oauth_command.command("login")
@click.argument("mailbox")
@click.option("--browser", is_flag=True,
              help="Sign in with a browser sent back to 127.0.0.1 (the only flow Google allows "
                   "for mail; the default for oauth2_provider = \"google\").")
@click.option("--port", type=int, default=0, show_default=True,
              help="With --browser: the loopback port to listen on (0: any free one); forward "
                   "it with ssh -L when the browser runs elsewhere.")
@click.pass_context
def login(ctx: click.Context, mailbox: str, browser: bool, port: int) -> None:
    """Get and store the refresh token of MAILBOX ("imap", "smtp", a [[mailboxes]] name, or
    its account)."""
    settings = settings_or_exit(ctx)
    name, section = _section(settings, mailbox)
    client = OAuthClient.from_section(name, section)
    store = store_for(Path(settings.storage.path), name, settings.privacy.master_keys)
    show = _shower(section.username)
    try:
        if browser or not client.device_url:
            record = browser_login(client, show, port=port)
        else:
            record = device_login(client, show)
    except OAuthProblem as problem:
        click.echo(f"ticketd: {problem}", err=True)
        sys.exit(1)
    with store.locked():  # not in the middle of the daemon's read, refresh and write
        store.save(record)
    click.echo(f"ticketd: {name} logged in; refresh token stored in {store.path} "
               f"({'encrypted' if store.masters else 'mode 0600'}). A running daemon uses it "
               f"at its next refresh.")


def _shower(username: str | None):  # noqa: ANN202
    def show(text: str) -> None:
        click.echo(f"Sign in as {username or 'the mailbox owner'}:\n{text}", err=False)
        sys.stdout.flush()
    return show


@oauth_command.command("status")
@click.pass_context
def status(ctx: click.Context) -> None:
    """Whether each OAuth mailbox has a stored login and when its access token expires."""
    settings = settings_or_exit(ctx)
    for name in _logins(settings):
        store = store_for(Path(settings.storage.path), name, settings.privacy.master_keys)
        try:
            record = store.load()
        except TokenFileError as err:
            click.echo(f"{name}: unreadable token file: {err}")
            continue
        if record is None:
            click.echo(f"{name}: not logged in: run `ticketd oauth login {name}`")
        else:
            left = record.expires_at - time.time()
            click.echo(f"{name}: logged in; access token "
                       + (f"valid for {left:.0f}s" if left > 0 else "expired (refreshed on use)"))
