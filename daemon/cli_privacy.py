"""`ticketd privacy`: legal holds (hold, release, holds); a person's data exported or erased
(export, erase); the master key rotated (rotate-master); a SQLite database in clear sealed
(encrypt-db).

daemon/cli.py calls `register(main)`. Placing and releasing a hold are events of the audit
trail; they name the contact by id, never by address, so that the trail, which cannot be
edited, holds no address of its own making. Helpers are imported inside the functions
because daemon.cli imports this module.
"""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import dataclass
from typing import Any

import click

from daemon.cli_common import temp_failures_exit_75 as _temp_failures_exit_75


def register(main: click.Group) -> None:
    main.add_command(privacy)


@click.group()
def privacy() -> None:
    """Personal data: legal holds, export, erasure, encryption keys."""


@dataclass(frozen=True)
class _Target:
    ticket_id: int | None = None
    contact_id: int | None = None
    label: str = ""


def _target(session: Any, text: str) -> _Target:
    """A ticket by its number ("10234", "#10234") or a contact by address; exits if unknown."""
    from sqlalchemy import select

    from storage import queries
    from storage.models import Contact

    if "@" in text:
        found = session.scalar(select(Contact.id).where(Contact.address == text.strip().lower()))
        if found is None:
            found = session.scalar(select(Contact.id).where(Contact.address == text.strip()))
        if found is None:
            click.echo(f"ticketd: no contact with the address {text}", err=True)
            sys.exit(1)
        return _Target(contact_id=found, label=f"contact {text}")
    ticket = queries.ticket_by_ref(session, text)
    if ticket is None:
        click.echo(f"ticketd: no ticket {text}", err=True)
        sys.exit(1)
    return _Target(ticket_id=ticket.id, label=f"ticket #{ticket.number}")


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


@privacy.command("hold")
@click.argument("target")
@click.option("--reason", required=True, help="Why the records must be kept (shown in `holds`).")
@click.option("--by", help="Who places the hold (default: the user running the command).")
@click.pass_context
@_temp_failures_exit_75
def hold(ctx: click.Context, target: str, reason: str, by: str | None) -> None:
    """Keep TARGET (a ticket number or a contact's address) from erasure and retention."""
    from daemon.cli_common import app_or_exit as _app
    from storage import holds, queries

    if not reason.strip():
        raise click.BadParameter("must say why", param_hint="--reason")
    who = _who(by)
    with _app(ctx).sessions.begin() as session:
        found = _target(session, target)
        hold_id = holds.place(session, reason=reason, by=who, ticket_id=found.ticket_id,
                              contact_id=found.contact_id)
        queries.insert_event(session, "legal_hold_placed", found.ticket_id, actor=who,
                             hold=hold_id, contact=found.contact_id, reason=reason)
    click.echo(f"hold {hold_id} placed on {found.label}")


@privacy.command("release")
@click.argument("target")
@click.option("--by", help="Who releases the hold (default: the user running the command).")
@click.pass_context
@_temp_failures_exit_75
def release(ctx: click.Context, target: str, by: str | None) -> None:
    """End the active holds placed on TARGET (a ticket number or a contact's address)."""
    from daemon.cli_common import app_or_exit as _app
    from storage import holds, queries

    who = _who(by)
    with _app(ctx).sessions.begin() as session:
        found = _target(session, target)
        ended = holds.release(session, by=who, ticket_id=found.ticket_id,
                              contact_id=found.contact_id)
        if ended:
            queries.insert_event(session, "legal_hold_released", found.ticket_id, actor=who,
                                 contact=found.contact_id, holds=ended)
    if not ended:
        click.echo(f"ticketd: no active hold on {found.label}", err=True)
        sys.exit(1)
    click.echo(f"{ended} hold(s) on {found.label} released")


@privacy.command("holds")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_temp_failures_exit_75
def list_holds(ctx: click.Context, as_json: bool) -> None:
    """List the active legal holds, oldest first."""
    from daemon.cli_common import app_or_exit as _app

    with _app(ctx).sessions() as session:
        docs = _active(session)
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    for doc in docs:
        what = f"ticket #{doc['ticket']}" if doc["ticket"] else f"contact {doc['contact']}"
        click.echo(f"{doc['id']:<5} {what:<40} {doc['placed_at']} by {doc['placed_by']}: "
                   f"{doc['reason']}")


def _active(session: Any) -> list[dict[str, Any]]:
    """The JSON shape of `ticketd privacy holds --json`; other tools read these names."""
    from sqlalchemy import select

    from storage.models import Contact, LegalHold, Ticket

    rows = session.execute(
        select(LegalHold, Ticket.number, Contact.address)
        .outerjoin(Ticket, Ticket.id == LegalHold.ticket_id)
        .outerjoin(Contact, Contact.id == LegalHold.contact_id)
        .where(LegalHold.released_at.is_(None)).order_by(LegalHold.id)).all()
    return [{"id": h.id, "ticket": number, "contact": address, "reason": h.reason,
             "placed_by": h.placed_by, "placed_at": h.placed_at.isoformat()}
            for h, number, address in rows]


@privacy.command("export")
@click.argument("address")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="The zip file to write (replaced when it exists).")
@click.option("--by", help="Who asks, for the event (default: the OS user).")
@click.pass_context
def export_command(ctx: click.Context, address: str, out_path: str, by: str | None) -> None:
    """Write everything about ADDRESS to a zip: tickets, messages, the original mails,
    attachments, the mails we sent, events, and a manifest of sha256 sums."""
    import contextlib
    import hashlib
    import os
    import sys

    from daemon.cli_common import app_or_exit as _app
    from daemon.cli_common import temp_failures_exit_75
    from storage.export import NoSuchContact, export
    from storage.queries import insert_event

    @temp_failures_exit_75
    def run() -> None:
        application = _app(ctx.find_root())
        partial = f"{out_path}.part"
        try:
            with application.sessions() as session, open(partial, "wb") as out:
                report = export(session, application.blobs, address, out)
        except NoSuchContact as err:
            os.unlink(partial)
            click.echo(f"ticketd: {err}", err=True)
            sys.exit(1)
        except BaseException:  # a half-written zip of someone's data is never left behind
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        os.replace(partial, out_path)  # a zip under its name is always a whole one
        with open(out_path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        with application.sessions.begin() as session:
            insert_event(session, "exported", None, actor=_who(by),
                         contact=report.contact_id, tickets=report.tickets,
                         received=report.received, sent=report.sent,
                         attachments=report.attachments, files=len(report.files),
                         sha256=digest)
        click.echo(f"{out_path}: {report.tickets} tickets, {report.received} mails received, "
                   f"{report.sent} sent, {report.attachments} attachments; sha256 {digest}")

    run()


@privacy.command("erase")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
@click.option("--by", help="Who erases, for the event (default: the OS user).")
@click.pass_context
def erase_command(ctx: click.Context, address: str, yes: bool, by: str | None) -> None:
    """Erase ADDRESS: destroy their data key, delete their files, blank their personal data,
    keep a tombstone and an event. Refused while a legal hold covers them."""
    import sys

    from daemon.cli_common import app_or_exit as _app
    from daemon.cli_common import temp_failures_exit_75
    from storage.erasure import ErasureRefused, erase, flush_to_disk

    if not yes:
        if not sys.stdin.isatty():
            click.echo("ticketd: erasure cannot be undone: confirm on a terminal, or pass "
                       "--yes", err=True)
            sys.exit(2)
        click.confirm(f"Erase every trace of {address}? This cannot be undone", abort=True)

    @temp_failures_exit_75
    def run() -> None:
        application = _app(ctx.find_root())
        try:
            with application.sessions.begin() as session:
                report = erase(session, application.blobs, address, _who(by))
        except ErasureRefused as err:
            click.echo(f"ticketd: erasure refused: {err}", err=True)
            sys.exit(1)
        flush_to_disk(application.engine)
        click.echo(f"erased (tombstone {report.erasure_id}): {len(report.tickets)} tickets, "
                   f"{report.messages} messages, {report.attachments} attachments, "
                   f"{report.outbox_rows} outgoing mails, {report.files} files; data key "
                   f"{'destroyed' if report.key_destroyed else 'none (stored in clear)'}")

    run()


@privacy.command("rotate-master")
@click.pass_context
def rotate_master(ctx: click.Context) -> None:
    """Re-wrap every data key with the newest master key (the first line of the key file).
    Blobs are not touched. Afterwards the older lines can be removed from the key file."""
    import sys

    from daemon.cli_common import app_or_exit as _app
    from daemon.cli_common import temp_failures_exit_75
    from storage import dbcipher
    from storage.crypto import KeyProblem

    @temp_failures_exit_75
    def run() -> None:
        application = _app(ctx.find_root())
        vault = application.vault
        if vault is None:
            click.echo("ticketd: no [privacy] key_file: encryption at rest is off", err=True)
            sys.exit(78)
        url = application.engine.url
        try:
            # The database key first: a data key left under the old master is re-wrapped
            # by the next run, a database key left under it loses the whole database once
            # the old line is removed from the key file.
            database = (url.get_backend_name() == "sqlite" and url.database
                        and dbcipher.rewrap(url.database, vault.masters))
            with application.sessions.begin() as session:
                count = vault.rewrap(session)
        except KeyProblem as err:
            click.echo(f"ticketd: {err}", err=True)
            sys.exit(1)
        click.echo(f"{count} data keys re-wrapped with master key {vault.masters.newest.id}"
                   + ("; the database key too" if database else ""))

    run()


@privacy.command("encrypt-db")
@click.pass_context
def encrypt_db(ctx: click.Context) -> None:
    """Seal a SQLite database kept in clear (made before [privacy] key_file was set) with
    SQLCipher, in place. Stop the daemon first. The old file is deleted, not scrubbed."""
    import sys

    from sqlalchemy.engine import make_url

    from daemon import app as app_mod
    from daemon.cli_common import EX_CONFIG, settings_or_exit
    from storage import dbcipher
    from storage.crypto import KeyProblem

    settings = settings_or_exit(ctx.find_root())
    vault = app_mod.vault(settings)
    url = make_url(settings.database.url)
    if vault is None or url.get_backend_name() != "sqlite" or not url.database:
        click.echo("ticketd: encrypt-db needs [privacy] key_file and a SQLite database "
                   "(PostgreSQL's encryption at rest is the server's)", err=True)
        sys.exit(EX_CONFIG)
    if dbcipher.state(url.database) != "plain":
        click.echo(f"{url.database} is not a database in clear: nothing to do")
        return
    try:
        size = dbcipher.encrypt(url.database, vault.masters)
    except (KeyProblem, dbcipher.SealError) as err:
        click.echo(f"ticketd: {err}", err=True)
        sys.exit(1)
    click.echo(f"{url.database}: {size} bytes sealed with SQLCipher; key in "
               f"{dbcipher.key_path(url.database)} (wrapped by master key "
               f"{vault.masters.newest.id})")
