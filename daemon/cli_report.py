"""`ticketd report`: complaint figures of a period, from the event log.

daemon/cli.py calls `register(main)`; the shared plumbing comes from daemon.cli_common.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from daemon.cli_common import app_or_exit, temp_failures_exit_75
from storage.reports import Period, build_report

FORMATS = ("csv", "json", "html")


def register(main: click.Group) -> None:
    main.add_command(report_command)


@click.command("report")
@click.option("--from", "first", required=True, metavar="DATE",
              help="First day of the period, YYYY-MM-DD (a UTC day).")
@click.option("--to", "last", required=True, metavar="DATE",
              help="Last day of the period, included, YYYY-MM-DD (a UTC day).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write to this file instead of standard output.")
@click.option("--profile", type=click.Choice(("ukgc", "mga", "cga", "none")),
              help="Add the regulator's layout: UKGC return figures, MGA monthly ADR list, "
                   "CGA periodic summary (with csv: the layout alone). Default: [complaints] "
                   "profile; none: no layout.")
@click.pass_context
@temp_failures_exit_75
def report_command(ctx: click.Context, first: str, last: str, fmt: str, out: Path | None,
                   profile: str | None) -> None:
    """Complaints received, acknowledged and decided in time, disputes, ADR referrals and
    outcomes, times to answer, by category; whole days in UTC."""
    # Jinja2 only when a report is made; matplotlib only when a chart is drawn.
    from responders import report_render

    period = _period(first, last)
    application = app_or_exit(ctx)
    chosen = profile or application.settings.complaints.profile
    with application.sessions() as session:
        report = build_report(session, period)
    render = {"csv": report_render.as_csv, "json": report_render.as_json,
              "html": report_render.as_html}[fmt]
    text = render(report, None if chosen == "none" else chosen)
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out} ({fmt}, {period.first} to {period.last} UTC)", err=True)


def _period(first: str, last: str) -> Period:
    days = []
    for text, hint in ((first, "--from"), (last, "--to")):
        try:
            days.append(date.fromisoformat(text))
        except ValueError:
            raise click.BadParameter("must be a date, YYYY-MM-DD", param_hint=hint) from None
    if days[1] < days[0]:
        raise click.BadParameter("is before --from", param_hint="--to")
    return Period(days[0], days[1])
