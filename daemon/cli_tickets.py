"""`ticketd tickets`, `show`, `search` and `events`: finding and overseeing tickets.

daemon/cli.py calls `register(main)`; the shared plumbing comes from daemon.cli_common.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from daemon.cli_common import app_or_exit, temp_failures_exit_75
from storage.models import STATUSES


def register(main: click.Group) -> None:
    for command in (tickets, show, search, events):
        main.add_command(command)


def _sessions(ctx: click.Context) -> Any:
    return app_or_exit(ctx).sessions


def _dump(doc: Any) -> None:
    click.echo(json.dumps(doc, ensure_ascii=False, indent=2))


# --- tickets -----------------------------------------------------------------------------

_AGO = re.compile(r"(\d+)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime) -> datetime:
    """"7d", "12h", "30m", "2w" before now, or an ISO date or time (UTC when it names no zone)."""
    found = _AGO.fullmatch(value.strip().lower())
    if found:
        return now - timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a span (7d, 12h, 30m, 2w) nor an ISO date/time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _when(value: datetime | None, now: datetime) -> str:
    """A due time as a lead reads it: when, and how long from now (or how long ago)."""
    if value is None:
        return "-"
    left = value - now
    minutes = int(abs(left.total_seconds()) // 60)
    span = (f"{minutes // 1440}d{minutes % 1440 // 60}h" if minutes >= 1440
            else f"{minutes // 60}h{minutes % 60:02d}m")
    relative = f"in {span}" if left.total_seconds() >= 0 else f"{span} late"
    return f"{value:%Y-%m-%d %H:%M}Z ({relative})"


@click.command()
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--requester", metavar="ADDRESS", help="Only tickets of this player.")
@click.option("--assignee", metavar="ADDRESS",
              help="Only tickets this agent holds; 'none' for tickets nobody holds.")
@click.option("--group", metavar="NAME", help="Only tickets routed to this group.")
@click.option("--category", metavar="NAME", help="Only tickets of this category.")
@click.option("--since", metavar="WHEN",
              help="Only tickets opened since: 7d, 12h, 30m, 2w, or an ISO date/time.")
@click.option("--loop-stopped", is_flag=True,
              help="Only tickets whose automatic mail was stopped as a loop.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000),
              help="Show at most this many; a last line says how many more match.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@temp_failures_exit_75
def tickets(ctx: click.Context, status: str | None, requester: str | None,
            assignee: str | None, group: str | None, category: str | None, since: str | None,
            loop_stopped: bool, limit: int, as_json: bool) -> None:
    """List tickets, newest first, with who holds each, its group and when its answer is due."""
    from storage import queries

    now = datetime.now(UTC)
    wanted = queries.TicketFilter(
        status=status, requester=requester, group=group, category=category,
        assignee="" if assignee is not None and assignee.lower() in ("none", "-") else assignee,
        since=parse_since(since, now) if since else None, loop_stopped=loop_stopped)
    with _sessions(ctx)() as session:
        rows, total = queries.find_tickets(session, wanted, limit)
    if as_json:
        _dump([row.as_dict() for row in rows])
    else:
        for t in rows:
            click.echo(f"#{t.number}  {t.status:<8} {t.priority:<7} {t.category:<15} {t.language}  "
                       f"{t.requester}  holder={t.assignee or '-'} group={t.group or '-'} "
                       f"due={_when(t.next_due, now)}{_loop_flag(t.loop_stopped_at)}  "
                       f"{t.subject[:60]}")
    if total > len(rows):  # on stderr, so that the JSON on stdout stays one document
        more = (f"{total - len(rows)} more (of {total})"
                if total - len(rows) <= queries.COUNT_CAP
                else f"more than {queries.COUNT_CAP:,} more")
        click.echo(f"... {more}; narrow the filters or raise --limit", err=as_json)


def _loop_flag(stopped: datetime | None) -> str:
    return f" LOOP-STOPPED={stopped:%Y-%m-%d %H:%M}Z" if stopped else ""


# --- show --------------------------------------------------------------------------------


@click.command()
@click.argument("ticket")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@temp_failures_exit_75
def show(ctx: click.Context, ticket: str, as_json: bool) -> None:
    """Show one ticket (by its public number): who holds it, when the answer is due, its
    messages and every mail sent for it, as the receiver got it."""
    from storage import queries

    with _sessions(ctx)() as session:
        found = queries.ticket_by_ref(session, ticket)
        if found is None:
            click.echo(f"ticketd: no ticket {ticket}", err=True)
            sys.exit(1)
        doc = queries.ticket_record(session, found)
    if as_json:
        _dump(doc)
        return
    now = datetime.now(UTC)
    due = datetime.fromisoformat(doc["next_due"]) if doc["next_due"] else None
    click.echo(f"#{doc['number']} {doc['subject']}")
    click.echo(f"status={doc['status']} category={doc['category']} priority={doc['priority']} "
               f"language={doc['language']} requester={doc['requester']} brand={doc['brand']}")
    flag = doc["requester_safeguarded"]
    if flag:
        click.echo(f"RESPONSIBLE GAMBLING: the requester asked for {flag['intent']} since "
                   f"{flag['since']} (under brand {flag['brand']}); holds for every brand")
    click.echo(f"held by {doc['assignee'] or 'nobody'}, group {doc['group'] or '-'}, "
               f"answer due {_when(due, now)}")
    if doc["loop_stopped_at"]:
        click.echo(f"LOOP STOPPED at {doc['loop_stopped_at']}: no automatic mail about it until "
                   "an agent answers its notification with a command or a #note")
    for _at, entry in _timeline(doc):
        if "direction" in entry:
            _print_message(entry, doc["requester"])
        else:
            click.echo(f"\n--- out {entry['kind']} at {entry['queued_at']}")
            _print_sent(entry, doc["requester"])


def _timeline(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Messages, and the mails sent that have no message of their own, in time order."""
    own = {m["sent"]["message_id"] for m in doc["messages"] if m["sent"]}
    entries = [(m["date"] or "", m) for m in doc["messages"]]
    entries += [(mail["queued_at"] or "", mail) for mail in doc["sent_mail"]
                if mail["message_id"] not in own]
    return sorted(entries, key=lambda entry: entry[0])


def _print_message(m: dict[str, Any], requester: str) -> None:
    mark = " [internal, never sent to the player]" if m["visibility"] == "internal" else ""
    click.echo(f"\n--- {m['direction']} {m['kind']} from {m['from']} at {m['date']}{mark}")
    if m["sent"] is None or m["text"].strip() not in m["sent"]["text"]:
        click.echo(m["text"])  # what was written, when the mail sent does not quote it whole
    for a in m["attachments"]:
        click.echo(f"[attachment] {a['filename']} {a['content_type']} {a['size']} bytes")
    if m["sent"]:
        _print_sent(m["sent"], requester)


def _print_sent(mail: dict[str, Any], requester: str) -> None:
    delivered = f", accepted by {', '.join(mail['accepted'])}" if mail["accepted"] else ""
    staff = "" if requester in mail["to"] else " [to staff, never sent to the player]"
    click.echo(f"sent to {', '.join(mail['to'])} ({mail['state']}{delivered}){staff}")
    click.echo(f"Subject: {mail['subject']}")
    click.echo(mail["text"].rstrip("\n"))


# --- search ------------------------------------------------------------------------------


@click.command()
@click.argument("text", nargs=-1, required=True)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@temp_failures_exit_75
def search(ctx: click.Context, text: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Find tickets whose subject or messages contain every word of TEXT, best first."""
    from storage import search as search_mod

    with _sessions(ctx)() as session:
        hits = search_mod.search(session, " ".join(text), limit)
    if as_json:
        _dump([{"number": h.number, "subject": h.subject, "status": h.status,
                "score": round(h.score, 6), "snippet": h.snippet} for h in hits])
        return
    for h in hits:
        snippet = " ".join(h.snippet.split())
        click.echo(f"#{h.number}  {h.status:<8} {h.subject[:60]}\n    {snippet}")
    if not hits:
        click.echo("no ticket matches", err=True)


# --- events ------------------------------------------------------------------------------


@click.command()
@click.option("--ticket", "ticket_ref", help="Only this ticket's events.")
@click.option("--kind", help="Only events of this kind (created, quarantined, ...).")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@temp_failures_exit_75
def events(ctx: click.Context, ticket_ref: str | None, kind: str | None, limit: int,
           as_json: bool) -> None:
    """Show the event log, newest first."""
    from storage import queries

    with _sessions(ctx)() as session:
        rows = queries.list_events(session, ticket_ref, kind, limit)
        numbers = queries.ticket_numbers(session, {e.ticket_id for e in rows if e.ticket_id})
    if as_json:
        _dump([{"id": e.id, "at": e.created_at.isoformat(), "kind": e.kind, "actor": e.actor,
                "ticket": numbers.get(e.ticket_id) if e.ticket_id else None, "data": e.data}
               for e in rows])
        return
    for event in rows:
        # A mail's text is for `show`; a line of the log names the mail.
        data = " ".join(f"{k}={_short(v)}" for k, v in sorted(event.data.items()) if k != "text")
        ticket = f" ticket=#{numbers[event.ticket_id]}" if event.ticket_id in numbers else ""
        click.echo(f"{event.created_at:%Y-%m-%d %H:%M:%S} {event.kind} actor={event.actor}"
                   f"{ticket} {data}")


def _short(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 120 else text[:119] + "…"
