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
    """A contact's record: show, clear-bounce."""


@contact.command("show")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@click.pass_context
@temp_failures_exit_75
def show(ctx: click.Context, address: str, as_json: bool) -> None:
    """One person across every brand: language, flags, and their tickets with each brand."""
    import json

    from storage import queries

    with app_or_exit(ctx).sessions() as session:
        record = queries.contact_record(session, address.strip())
    if record is None:
        click.echo(f"ticketd: no contact {address.strip().lower()}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(record, ensure_ascii=False, indent=2))
        return
    click.echo(f"{record['address']} {record['name'] or ''}".rstrip())
    bouncing = "yes" if record["bouncing"] else "no"
    click.echo(f"language={record['language'] or '-'} bouncing={bouncing}")
    flag = record["safeguarded"]
    if flag:
        click.echo(f"RESPONSIBLE GAMBLING: {flag['intent']} since {flag['since']} (asked under "
                   f"brand {flag['brand']}); holds for every brand")
    for t in record["tickets"]:
        click.echo(f"#{t['number']} brand={t['brand']} {t['status']} {t['subject']}")


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
