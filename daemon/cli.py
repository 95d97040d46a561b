"""The `ticketd` command line. Only the cli modules configure logging and exit the process."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import click

from config import EX_CONFIG, render_effective
from daemon import app as app_mod
from daemon import logs
from daemon.cli_common import EX_TEMPFAIL, temp_failures_exit_75
from daemon.cli_common import app_or_exit as _app
from daemon.cli_common import app_when_database_answers as _app_when_database_answers
from daemon.cli_common import settings_or_exit as _settings


@click.group()
@click.version_option(package_name="ticketd", prog_name="ticketd")
@click.option("--config", "config_path", envvar="TICKETD_CONFIG", type=click.Path(dir_okay=False),
              help="TOML configuration file (default: $TICKETD_CONFIG, else built-in defaults).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """ticketd: the help desk behind the support address."""
    ctx.obj = {"config": config_path}


@main.command("check-config")
@click.pass_context
def check_config(ctx: click.Context) -> None:
    """Validate the configuration and print the effective settings, secrets masked;
    warnings (settings that load but will not work as meant) go to standard error."""
    from daemon.team import routing_warnings

    settings = _settings(ctx)
    click.echo(render_effective(settings), nl=False)
    for warning in routing_warnings(settings.team):
        click.echo(logs.for_stderr(f"ticketd: warning: {warning}", logging.WARNING), err=True)


@main.command()
@click.option("--fix", is_flag=True,
              help="Create what is missing and can be made: the storage directory, IMAP folders.")
@click.pass_context
def doctor(ctx: click.Context, fix: bool) -> None:
    """Check database, storage, IMAP, SMTP and keys; one line each; exit 1 if any fails.
    Changes nothing unless --fix."""
    from daemon import doctor as doctor_mod

    settings = _settings(ctx)
    logs.setup("CRITICAL")  # the report is the output
    results = doctor_mod.run_checks(settings, fix=fix)
    for r in results:
        status = "FAIL" if not r.ok else "warn" if r.warning else "ok  "
        click.echo(f"{status}  {r.name:<12} {r.detail}")
    sys.exit(doctor_mod.exit_code(results))


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.pass_context
@temp_failures_exit_75
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the schema to this version."""
    application = _app(ctx.parent, check_schema=False)  # type: ignore[arg-type]
    before = app_mod.db.current_revision(application.engine)
    if before != app_mod.db.head_revision():
        click.echo(f"migrating the schema from {before or 'nothing'} to "
                   f"{app_mod.db.head_revision()} ...", err=True)
    app_mod.db.upgrade(application.engine)
    click.echo(f"schema at {app_mod.db.current_revision(application.engine)}")


@main.command()
@click.argument("files", nargs=-1, type=click.File("rb"))
@click.option("--brand", default=None, metavar="NAME",
              help="Ticket the mail under this [[brands]] name (default: [support]'s).")
@click.pass_context
@temp_failures_exit_75
def ingest(ctx: click.Context, files: tuple[Any, ...], brand: str | None) -> None:
    """Ingest mails from FILES (or one from standard input), as an MTA pipe would."""
    from daemon.ingest import TemporaryFailure
    from storage.models import utcnow

    application = _app(ctx)
    if brand is not None and brand not in application.runtime.brands:
        click.echo(f"ticketd: no brand {brand!r} (configured: "
                   f"{', '.join(application.runtime.brands)})", err=True)
        sys.exit(EX_CONFIG)
    ingestor = application.ingestor_for(brand)
    sources = files or (click.get_binary_stream("stdin"),)
    for fh in sources:
        try:
            # An MTA pipes a mail as it delivers it: received now, whatever the sender's
            # Date says (a FILE keeps the Date rule: it may be a mail kept from before).
            delivered = None if files else utcnow()
            result = ingestor.ingest(fh.read(), source=f"file:{fh.name}", delivered_at=delivered)
        except TemporaryFailure as err:
            click.echo(f"ticketd: temporary failure: {err}", err=True)
            sys.exit(EX_TEMPFAIL)
        number = f" #{result.ticket_number}" if result.ticket_number else ""
        note = " (already ingested)" if result.duplicate else ""
        reason = f": {result.reason}" if result.reason else ""
        click.echo(f"{fh.name}: {result.outcome}{number}{note}{reason}")


@main.command()
@click.option("--once", is_flag=True, help="Drain each mailbox once and exit.")
@click.pass_context
@temp_failures_exit_75
def run(ctx: click.Context, once: bool) -> None:
    """Run the daemon: watch the mailboxes (IMAP IDLE) until SIGTERM."""
    from daemon import service

    application = _app(ctx) if once else _app_when_database_answers(ctx)
    if once:
        tty = sys.stderr.isatty()

        def progress(count: int) -> None:
            if tty and count % 50 == 0:
                click.echo(f"\ringested {count} mails ...", err=True, nl=False)

        stats = service.drain_once(application, progress)
        if tty:
            click.echo("", err=True)
        click.echo(
            f"stored={stats.stored} duplicates={stats.duplicates} "
            f"ignored={stats.ignored} quarantined={stats.quarantined}"
        )
        return
    sys.exit(asyncio.run(service.Service(application, ctx.obj["config"]).serve()))


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False), default="ticketd-demo",
              show_default=True, help="Where the demo keeps its database and mails.")
def demo(workdir: str) -> None:
    """Run a self-contained demonstration: SQLite, sample complaints, local mail."""
    from daemon import demo as demo_mod

    logs.setup("ERROR")  # the demo prints its own report
    sys.exit(demo_mod.run(workdir))


from daemon.cli_outbox import register as _register_outbox  # noqa: E402 - needs main defined

_register_outbox(main)

from daemon.cli_sla import register as _register_sla  # noqa: E402

_register_sla(main)

from daemon.cli_tickets import register as _register_tickets  # noqa: E402

_register_tickets(main)

from daemon.cli_spam import register as _register_spam  # noqa: E402

_register_spam(main)

from daemon.cli_records import register as _register_records  # noqa: E402

_register_records(main)

from daemon.cli_privacy import register as _register_privacy  # noqa: E402

_register_privacy(main)

from daemon.cli_report import register as _register_report  # noqa: E402

_register_report(main)

from daemon.cli_oauth import register as _register_oauth  # noqa: E402

_register_oauth(main)

from daemon.cli_contact import register as _register_contact  # noqa: E402

_register_contact(main)
