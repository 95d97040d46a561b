"""`ticketd contact`: a person's contact record from the command line.

`contact clear-bounce ADDRESS` lifts the bouncing flag that a permanent bounce set, so the
address gets acknowledgements again (a player who fixed their mailbox, a mistaken bounce).
daemon/cli.py calls `register(main)`; the shared plumbing comes from daemon.cli_common.
"""

from __future__ import annotations

import sys

import click

from daemon.cli_common import app_or_exit, temp_failures_exit_75


def register(main: click.Group) -> None:
    main.add_command(contact)


@click.group()
def contact() -> None:
    """A contact's record: clear-bounce."""


@contact.command("clear-bounce")
@click.argument("address")
@click.option("--by", default="cli", show_default=True, help="Who clears it, for the event.")
@click.pass_context
@temp_failures_exit_75
def clear_bounce(ctx: click.Context, address: str, by: str) -> None:
    """Mail ADDRESS again: clear its bouncing flag (an event records who did it)."""
    from storage import queries

    wanted = address.strip().lower()
    with app_or_exit(ctx).sessions.begin() as session:
        known = queries.contact_known(session, wanted)
        cleared = known and queries.clear_bouncing(session, wanted, actor=by, how="command")
    if not known:
        click.echo(f"ticketd: no contact {wanted}", err=True)
        sys.exit(1)
    click.echo(f"{wanted}: bouncing cleared" if cleared else f"{wanted}: was not bouncing")
