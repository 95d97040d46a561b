"""`ticketd retention` (the sweep from the command line) and `ticketd events verify`.

daemon/cli.py calls `register(main)`. `events verify` is added by turning the `events`
command into a group that keeps its options and its listing (`ticketd events --kind x`
works as before): the listing stays where it is, this module only adds the subcommand.
Helpers are imported inside the functions because daemon.cli imports this module.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime
from typing import Any

import click

from daemon.cli_common import instant
from daemon.cli_common import temp_failures_exit_75 as _temp_failures_exit_75


def register(main: click.Group) -> None:
    main.add_command(retention_command)
    main.add_command(_events_group(main.commands["events"]))


def _events_group(listing: click.Command) -> click.Group:
    if isinstance(listing, click.Group):  # already a group: only add the subcommand
        listing.add_command(verify_command)
        return listing

    def callback(**options: Any) -> Any:
        ctx = click.get_current_context()
        if ctx.invoked_subcommand is None and listing.callback is not None:
            return ctx.invoke(listing.callback, **options)
        return None

    group = click.Group(listing.name, params=listing.params, callback=callback,
                        help=listing.help, invoke_without_command=True)
    group.add_command(verify_command)
    return group


@click.command("verify")
@click.option("--no-seal", is_flag=True,
              help="Check only; do not first chain the events written since the last sealing.")
@click.pass_context
@_temp_failures_exit_75
def verify_command(ctx: click.Context, no_seal: bool) -> None:
    """Check the hash chain of the event log; name the first broken row (exit 1)."""
    from daemon.cli_common import app_or_exit as _app
    from storage import audit

    root = ctx.find_root()
    application = _app(root)
    if not no_seal:
        audit.seal(application.sessions)
    with application.sessions() as session:
        verdict = audit.verify(session)
    pending = f"; {verdict.unsealed} not yet sealed" if verdict.unsealed else ""
    if verdict.broken is not None:
        broken = verdict.broken
        click.echo(f"BROKEN at event {broken.event_id} (chain place {broken.chain_seq}): "
                   f"{broken.reason}")
        click.echo(f"{verdict.checked} events before it are intact{pending}")
        sys.exit(1)
    click.echo(f"ok: {verdict.checked} events chained, head place {verdict.head_seq} "
               f"hash {verdict.head_hash}{pending}")


@click.command("retention")
@click.option("--once", is_flag=True, help="One sweep, then exit.")
@click.option("--now", "at", metavar="ISO-TIME",
              help="With --once: sweep as if it were this time (UTC unless it has an offset); "
                   "a time ahead of the clock only counts, unless --apply.")
@click.option("--apply", is_flag=True, help="With --now ahead of the clock: really sweep.")
@click.pass_context
@_temp_failures_exit_75
def retention_command(ctx: click.Context, once: bool, at: str | None, apply: bool) -> None:
    """Apply the [retention] rules and prune the loop ledger: until SIGTERM, or with --once
    one sweep."""
    from daemon.cli_common import app_or_exit as _app
    from daemon.retention import (
        RecordsKeeper,
        RetentionSweeper,
        ledger_kept,
        prune_loop_ledger,
    )

    if (at is not None or apply) and not once:
        raise click.UsageError("--now and --apply go with --once")
    application = _app(ctx)
    settings = application.settings
    if not once:
        keeper = RecordsKeeper.following(lambda: settings, application.sessions,
                                         application.blobs)
        asyncio.run(_serve(keeper))
        return
    now = instant(at)
    dry = now is not None and now > datetime.now(UTC) and not apply
    sweeper = RetentionSweeper.from_settings(settings, application.sessions, application.blobs)
    counts = sweeper.run_once(now, apply=not dry)
    # The same prune (and lock) as the daemon's records task, for a desk swept by cron. The
    # ledger holds the live loop limits: a sweep applied ahead of the clock prunes it as of now.
    ledger_at = None if now is not None and not dry and now > datetime.now(UTC) else now
    pruned = prune_loop_ledger(application.sessions, ledger_kept(settings), ledger_at,
                               apply=not dry)
    ledger = "skipped (another process is pruning it)" if pruned is None else pruned
    click.echo(f"{counts.line()} loop_ledger={ledger}" + (
        " (dry run: --now is ahead of the clock; nothing changed, --apply to sweep)"
        if dry else ""))


async def _serve(keeper: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await keeper.run(stop)
