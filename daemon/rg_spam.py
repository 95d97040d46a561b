"""Spam that speaks of responsible gambling: a person must see it, whatever the filter said.

A player who asks to be excluded may write from an address or a provider that spam filters
dislike. Such a mail is not left silently in Junk: when its sender is vouched for (our MTA
authenticated it for the From domain, or the address has asked us something before) it is
ingested as a normal mail, and the safeguard escalates it; otherwise it stays spam (the
phrase alone is cheap for a spammer to write) but is flagged in `ticketd spam list` and told
to operations in one mail an hour, as the dead-acknowledgement digest is: one outbox row per
hour (its Message-ID made from the hour), rewritten while it has not been tried.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from responders.ops_notice import ops_notice
from storage import outbox, queries
from storage.models import IngestRecord

EVENT = "spam_responsible_gambling"
_LISTED = 50


def tell_operations(session: Session, *, to: tuple[str, ...], sender: str,
                    now: datetime) -> None:
    """Bring this hour's notice up to date, in the transaction that kept the spam."""
    if not to or not sender:
        return
    hour = now.replace(minute=0, second=0, microsecond=0)
    domain = sender.rpartition("@")[2] or "localhost"
    message_id = f"<rg-spam.{hour:%Y%m%d%H}.ticketd@{domain}>"
    row = outbox.enqueue_once(session, raw=_notice([], hour, to, sender, message_id, now),
                              message_id=message_id, kind="ops", envelope_from=sender,
                              recipients=list(to), now=now, due=now)
    flagged = _flagged_in(session, hour)
    outbox.rewrite_untried(session, row, _notice(flagged, hour, to, sender, message_id, now))


def _flagged_in(session: Session, hour: datetime) -> list[tuple[int, str]]:
    """(spam id, intent) of the flagged spam kept since `hour` and still spam."""
    queries.flush_held(session)  # this batch's spam, its own record among them
    rows = session.execute(select(IngestRecord.id, IngestRecord.rg_intent).where(
        IngestRecord.outcome == "spam", IngestRecord.rg_intent.is_not(None),
        IngestRecord.created_at >= hour).order_by(IngestRecord.id)).all()
    return [(r.id, r.rg_intent) for r in rows]


def _notice(flagged: list[tuple[int, str]], hour: datetime, to: tuple[str, ...], sender: str,
            message_id: str, now: datetime) -> bytes:
    """Names each spam by its id and the intent found, never its sender or words (a
    spammer's text is not relayed to staff); automatic mail (invariant 3)."""
    lines = [f"Our MTA marked {len(flagged) or 'some'} mail(s) as spam between {hour:%H}:00 and "
             f"{hour + timedelta(hours=1):%H}:00 UTC that ask for self-exclusion or account",
             "closure, or speak of gambling harm. Their senders are not vouched for, so no",
             "ticket was opened. Please look at each: a player in trouble may have written.", ""]
    lines += [f"spam id {spam_id}  {intent}" for spam_id, intent in flagged[:_LISTED]]
    if len(flagged) > _LISTED:
        lines.append(f"... and {len(flagged) - _LISTED} more")
    lines += ["", "See them: ticketd spam list    Make one a ticket: ticketd spam release ID"]
    subject = f"ticketd: spam with a responsible-gambling sentence, {hour:%Y-%m-%d %H}:00 UTC"
    return ops_notice(sender=sender, to=to, subject=subject, message_id=message_id, now=now,
                      text="\n".join(lines))
