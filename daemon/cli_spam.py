"""`ticketd spam list` and `ticketd spam release ID`: mail our MTA's filter marked as spam;
`ticketd quarantine list` and `ticketd quarantine release ID`: mail kept with a reason;
`ticketd scan check`: whether clamd answers and finds the EICAR test file.

Spam is kept (its raw bytes and the verdict) but opens no ticket; a person looks at the list
and releases what was wrongly marked, which is then ingested exactly as a normal mail.
daemon/cli.py calls `register(main)`; the shared plumbing comes from daemon.cli_common.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from daemon.cli_common import app_or_exit as _app
from daemon.cli_common import settings_or_exit as _settings
from daemon.cli_common import temp_failures_exit_75

if TYPE_CHECKING:
    from storage.models import IngestRecord


def register(main: click.Group) -> None:
    main.add_command(spam_command)
    main.add_command(quarantine_command)
    main.add_command(scan_command)


@click.group("scan")
def scan_command() -> None:
    """The virus scanner attachments go through ([scan])."""


@scan_command.command("check")
@click.pass_context
def scan_check(ctx: click.Context) -> None:
    """Send clamd the EICAR test file: exit 0 when it answers and finds it, 1 otherwise."""
    from daemon.safety import check_clamd
    from daemon.scan import ScannerUnavailable

    settings = _settings(ctx)
    try:
        click.echo(check_clamd(settings))
    except (ScannerUnavailable, ValueError) as err:
        click.echo(f"ticketd: {err} (on_unavailable = {settings.scan.on_unavailable})", err=True)
        sys.exit(1)


@click.group("spam")
def spam_command() -> None:
    """Mail our MTA's spam filter marked: list it, release it."""


@spam_command.command("list")
@click.option("--limit", default=200, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@click.pass_context
def spam_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The spam kept, newest first: id, when, the verdict, the Message-ID. A spam that asks
    for self-exclusion or closure, or speaks of gambling harm, is marked "RG:<intent>"."""
    from storage.spam import SPAM

    def row(r: IngestRecord) -> dict:
        return {"id": r.id, "received": r.created_at.isoformat(timespec="seconds"),
                "verdict": r.reason, "message_id": r.header_message_id or "",
                "size": r.raw_size, "responsible_gambling": r.rg_intent}

    def line(row: dict) -> str:
        flag = f"RG:{row['responsible_gambling']}" if row["responsible_gambling"] else ""
        return (f"{row['id']:>7}  {row['received']}  {flag:<18}  {row['verdict'][:60]:<60}  "
                f"{row['message_id'][:60]}")

    _listing(ctx, SPAM, limit, as_json, row, line, empty="no spam kept")


@spam_command.command("release")
@click.argument("record_id", metavar="ID", type=int)
@click.pass_context
def spam_release(ctx: click.Context, record_id: int) -> None:
    """Ingest the spam ID (from `ticketd spam list`) as a normal mail, and move it from the
    Junk folder to Processed when it came from the [imap] mailbox."""
    click.echo(_release(ctx, record_id, "spam"))


@click.group("quarantine")
def quarantine_command() -> None:
    """Mail that could not be taken as it came (unparseable, no readable sender, an agent's
    forward that did not authenticate ...): list it, release it."""


@quarantine_command.command("list")
@click.option("--limit", default=200, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@click.pass_context
def quarantine_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The quarantined mail, newest first: id, when, the reason, the Message-ID."""
    from storage.spam import QUARANTINED

    def row(r: IngestRecord) -> dict:
        return {"id": r.id, "received": r.created_at.isoformat(timespec="seconds"),
                "reason": r.reason, "message_id": r.header_message_id or "", "size": r.raw_size}

    def line(row: dict) -> str:
        return (f"{row['id']:>7}  {row['received']}  {row['reason'][:70]:<70}  "
                f"{row['message_id'][:50]}")

    _listing(ctx, QUARANTINED, limit, as_json, row, line, empty="nothing quarantined")


@quarantine_command.command("release")
@click.argument("record_id", metavar="ID", type=int)
@click.pass_context
def quarantine_release(ctx: click.Context, record_id: int) -> None:
    """Ingest the quarantined mail ID (from `ticketd quarantine list`) again, as checked by a
    person: an agent's forward is then taken as theirs. Moved from the quarantine folder to
    Processed unless it is quarantined again (a mail that cannot be parsed stays)."""
    click.echo(_release(ctx, record_id, "quarantined"))


def _listing(ctx: click.Context, outcome: str, limit: int, as_json: bool,
             row: Callable[[IngestRecord], dict], line: Callable[[dict], str], *,
             empty: str) -> None:
    """Print the newest `limit` records of `outcome`: one JSON array of `row`s, or a `line`
    each and `empty` when there are none."""
    from storage.spam import list_spam

    @temp_failures_exit_75
    def listed() -> list[dict]:
        with _app(ctx).sessions() as session:
            return [row(r) for r in list_spam(session, limit, outcome)]

    rows = listed()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    for each in rows:
        click.echo(line(each))
    if not rows:
        click.echo(empty)


def _release(ctx: click.Context, record_id: int, outcome: str) -> str:
    """Release one spam or quarantined mail; the command's line."""
    from daemon.ingest import TemporaryFailure
    from storage.spam import spam_record

    what = "spam" if outcome == "spam" else "quarantined mail"

    @temp_failures_exit_75
    def released() -> str:
        application = _app(ctx)
        with application.sessions() as session:
            record = spam_record(session, record_id, outcome)
            if record is None:
                click.echo(f"ticketd: no {what} with id {record_id}", err=True)
                sys.exit(1)
            if not record.raw_size:
                click.echo(f"ticketd: {what} {record_id} was never downloaded (too large): "
                           "it is only in the mailbox", err=True)
                sys.exit(1)
            digest, source, size = record.raw_sha256, record.source, record.raw_size
            vault = application.vault  # a mail sealed at ingest opens with its sender's key
            key = vault.key(session, record.key_id) if vault and record.key_id else None
        raw = application.blobs.get_raw(digest, key)
        settings = application.settings
        moved = ""
        if outcome == "spam":
            # Out of Junk first: its bytes are ours already, so an ingest that fails after
            # the move is simply released again (the record is still spam). The other way
            # round, a failed move after the commit could not be redone.
            moved = _move(application, source, digest, size, settings.imap.junk_folder
                          if settings.imap else "")
        try:
            [result] = application.ingestor.ingest_many([(raw, source)], released=True)
        except TemporaryFailure as err:
            click.echo(f"ticketd: temporary failure: {err}", err=True)
            sys.exit(75)
        if result.outcome == "held":
            click.echo(f"ticketd: temporary failure: {result.reason}", err=True)
            sys.exit(75)
        if outcome != "spam" and result.outcome != "quarantined" and settings.imap:
            # After the commit: a mail quarantined again stays in its folder.
            moved = _move(application, source, digest, size, settings.imap.quarantine_folder)
        number = f" ticket=#{result.ticket_number}" if result.ticket_number else ""
        return f"released id={record_id} outcome={result.outcome}{number}{moved}"

    return released()


def _move(application, source: str, digest: str, size: int, folder: str) -> str:  # noqa: ANN001
    """Move the released mail from `folder` to Processed when it came from the [imap]
    mailbox; what to add to the command's line. An IMAP server that cannot be reached is a
    temporary failure (exit 75)."""
    from daemon.imap import ImapConfigError, is_temporary
    from daemon.service import mailbox_name

    settings = application.settings
    if settings.imap is None or not source.startswith(f"{mailbox_name(settings)};uid="):
        return ""  # delivered some other way (ticketd ingest): no folder to tidy
    mailbox = application.imap_source()
    try:
        mailbox.connect()
        found = mailbox.take_out_of(folder, digest, size)
    except ImapConfigError as err:
        click.echo(f"ticketd: imap: {err}", err=True)
        sys.exit(1)
    except Exception as err:
        if not is_temporary(err):
            raise
        click.echo(f"ticketd: temporary failure: imap: {type(err).__name__}: {err}", err=True)
        sys.exit(75)
    finally:
        mailbox.close()
    return f" moved={folder}->{settings.imap.processed_folder}" if found else " moved=none"
