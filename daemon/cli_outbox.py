"""`ticketd deliver` and `ticketd outbox`: the outbox from the command line.

daemon/cli.py calls `register(main)`; the shared plumbing comes from daemon.cli_common.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import click

from daemon.cli_common import EX_CONFIG, app_or_exit, temp_failures_exit_75
from storage.models import OUTBOX_STATES


def register(main: click.Group) -> None:
    main.add_command(deliver)
    main.add_command(outbox_command)


def _sender(ctx: click.Context):  # noqa: ANN202 - (daemon.outbox.OutboxSender, App)

    application = app_or_exit(ctx)
    if application.settings.smtp is None and application.settings.webhooks is None:
        click.echo("ticketd: no [smtp] section nor [webhooks] in the configuration: nothing "
                   "can be sent", err=True)
        sys.exit(EX_CONFIG)
    return application.outbox_sender(), application


@click.command()
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.pass_context
@temp_failures_exit_75
def deliver(ctx: click.Context, once: bool) -> None:
    """Send the outbox through [smtp] and [webhooks]: until SIGTERM, or with --once what is
    due now."""
    sender, application = _sender(ctx)
    if once:
        stats = asyncio.run(sender.drain())
        click.echo(f"sent={stats.sent} deferred={stats.retried} dead={stats.dead}")
        return
    interval = application.settings.outbox.interval.total_seconds()
    asyncio.run(_serve(sender, interval))


async def _serve(sender: Any, interval: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await sender.run(stop, interval)


@click.group("outbox", invoke_without_command=True)
@click.option("--state", type=click.Choice(OUTBOX_STATES), help="Only rows in this state.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@temp_failures_exit_75
def outbox_command(ctx: click.Context, state: str | None, as_json: bool) -> None:
    """List outgoing mail and webhooks, newest first; `outbox retry ID` sends a dead one
    again."""
    if ctx.invoked_subcommand is not None:
        return
    from storage import outbox

    with app_or_exit(ctx).sessions() as session:
        rows = outbox.list_rows(session, state)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], ensure_ascii=False, indent=2))
        return
    for r in rows:
        ticket = f"#{r.ticket}" if r.ticket else "-"
        due = f"{r.next_attempt_at:%Y-%m-%dT%H:%M:%SZ}" if r.state == "pending" else "-"
        error = " ".join((r.last_error or "-").split())[:120]
        event = f" event={r.event}" if r.event else ""
        click.echo(f"{r.id:>6} {r.state:<7} {r.kind:<12} attempts={r.attempts} next={due} "
                   f"ticket={ticket} to={','.join(r.recipients)}{event} error={error}")


@outbox_command.command("retry")
@click.argument("row_id", type=int)
@click.pass_context
@temp_failures_exit_75
def outbox_retry(ctx: click.Context, row_id: int) -> None:
    """Send a dead row again from now, with a new lifetime."""
    from storage import outbox

    application = app_or_exit(ctx)
    with application.sessions.begin() as session:
        done = outbox.requeue(session, row_id, lifetime=application.settings.outbox.lifetime)
    if not done:
        click.echo(f"ticketd: no dead outbox row {row_id}", err=True)
        sys.exit(1)
    click.echo(f"outbox row {row_id} is pending again")
