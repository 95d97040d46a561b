"""`ticketd sla`: the SLA monitor from the command line, and `ticketd sla status`.

daemon/cli.py calls `register(main)`; the shared plumbing comes from daemon.cli_common.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from daemon.cli_common import app_or_exit, instant, temp_failures_exit_75


def register(main: click.Group) -> None:
    main.add_command(sla_command)


@click.group("sla", invoke_without_command=True)
@click.option("--once", is_flag=True, help="One pass over the clocks due now, then exit.")
@click.option("--now", "at", metavar="ISO-TIME",
              help="With --once: run the pass as if it were this time (UTC unless it has an "
                   "offset). A time ahead of the clock only shows what would be sent.")
@click.option("--apply", is_flag=True,
              help="With --now ahead of the clock: record and queue for real.")
@click.pass_context
@temp_failures_exit_75
def sla_command(ctx: click.Context, once: bool, at: str | None, apply: bool) -> None:
    """Send SLA warnings and breach escalations: until SIGTERM, or with --once one pass."""
    if ctx.invoked_subcommand is not None:
        return
    if at is not None and not once:
        raise click.UsageError("--now goes with --once")
    if apply and at is None:
        raise click.UsageError("--apply goes with --now")
    application = app_or_exit(ctx)
    monitor = application.sla_monitor()
    if not once:
        asyncio.run(_serve(monitor, application.settings.sla.interval.total_seconds()))
        return
    moment = instant(at)
    # Escalating at a time still to come would send real mail about breaches that have
    # not happened, and mark them done: a time ahead is looked at, not acted on.
    dry = moment is not None and moment > datetime.now(UTC) and not apply
    stats = monitor.preview(moment) if dry and moment else monitor.run_once(moment)
    would = "would send: " if dry else ""
    for item in stats.escalations:
        to = ", ".join(item.recipients) or f"nobody ({item.withheld})"
        click.echo(f"{would}#{item.ticket} {item.clock_kind} {item.stage_name} -> {to}")
    guard = stats.complaints  # the complaint deadline guard of the same pass (not in a dry run)
    for number, point in guard.done:
        click.echo(f"#{number} complaint {point}")
    if guard.due:  # said only when the guard had something to do: the SLA lines stay as they were
        click.echo(f"complaints due={guard.due} reminders={guard.reminders} "
                   f"letters={guard.letters} lost={guard.lost} failed={guard.failed}")
    click.echo(f"due={stats.due} warnings={stats.warnings} breaches={stats.breaches} "
               f"lost={stats.lost} failed={stats.failed}")
    if dry:
        click.echo(f"dry run: --now {moment.isoformat()} is ahead of the clock; nothing was "
                   "recorded or queued (add --apply to do it)")
    if stats.failed or guard.failed:
        sys.exit(1)


async def _serve(monitor: Any, interval: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await monitor.run(stop, interval)


@sla_command.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=200, show_default=True, help="At most this many clocks.")
@click.pass_context
@temp_failures_exit_75
def sla_status(ctx: click.Context, as_json: bool, limit: int) -> None:
    """List running and paused clocks, the next to act first."""
    from storage import sla

    with app_or_exit(ctx).sessions() as session:
        rows = sla.active_clocks(session, limit)
    docs = [_as_dict(row) for row in rows]
    if as_json:
        click.echo(json.dumps(docs, ensure_ascii=False, indent=2))
        return
    for doc in docs:
        when = f"paused, {doc['remaining']} left" if doc["paused_at"] else f"due {doc['due_at']}"
        click.echo(f"#{doc['ticket']:<8} {doc['kind']:<15} {doc['policy']:<8} "
                   f"{doc['stage']:<8} {when}  next={doc['next_action_at'] or '-'}")


def _as_dict(row: Any) -> dict[str, Any]:
    """The JSON shape of `ticketd sla status --json`; other tools read these names."""
    from storage.models import SLA_STAGES

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "ticket": row.ticket, "kind": row.kind, "policy": row.policy,
        "stage": SLA_STAGES[row.stage], "started_at": iso(row.started_at),
        "due_at": iso(row.due_at), "remaining": _hms(row.remaining),
        "paused_at": iso(row.paused_at), "next_action_at": iso(row.next_action_at),
        "breached_at": iso(row.breached_at),
    }


def _hms(delta: timedelta) -> str:
    minutes = int(delta.total_seconds()) // 60
    return f"{minutes // 60}h{minutes % 60:02d}m"
