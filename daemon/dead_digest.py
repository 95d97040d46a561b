"""One report an hour to operations about acknowledgements given up, not one per mail.

A public support address is written to by junk senders whose addresses do not exist; each
acknowledgement to them dies, and a report per dead mail would flood operations with noise
(the mail is still listed by `ticketd outbox --state dead`). The digest of an hour is one
outbox row with a Message-ID made from the hour, so it exists once whatever the number of
daemons or restarts (the column is unique), due at the end of its hour; each acknowledgement
that dies in that hour rewrites it while it has not been tried yet. Its permanently refused
recipients are marked bouncing, so they are not acknowledged again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from responders.ops_notice import ops_notice
from storage import outbox, queries
from storage.models import Event

DIGESTED_KINDS = frozenset({"ack"})  # automatic mail to whoever wrote: junk dies here
_LISTED = 50  # rows named in one digest; the rest are counted


def bury_in_digest(session: Session, refused: dict[str, str], *, ops: str | None,
                   sender: str, now: datetime) -> None:
    """After an acknowledgement was marked dead in this transaction: flag its refused
    recipients as bouncing and, with an `ops` address, bring the hour's digest up to date."""
    for address in refused:
        queries.mark_bouncing(session, address.lower())
    if not ops:
        return
    hour = now.replace(minute=0, second=0, microsecond=0)
    domain = sender.rpartition("@")[2] or "localhost"
    message_id = f"<dead-acks.{hour:%Y%m%d%H}.ticketd@{domain}>"
    # The row first, locked: a second daemon's digest waits here, then reads the events
    # committed meanwhile, so the last writer lists them all.
    row = outbox.enqueue_once(session, raw=_digest([], hour, to=ops, sender=sender,
                                                   message_id=message_id, now=now),
                              message_id=message_id, kind="ops", envelope_from=sender,
                              recipients=[ops], now=now, due=hour + timedelta(hours=1))
    raw = _digest(_dead_in(session, hour, now), hour, to=ops, sender=sender,
                  message_id=message_id, now=now)
    # Not tried yet: rewritten whole. Once sent, a late one stays in `outbox --state dead`.
    outbox.rewrite_untried(session, row, raw)


def _dead_in(session: Session, hour: datetime, now: datetime) -> list[dict]:
    """The acknowledgements given up from `hour` to `now`, by their delivery_failed events."""
    events = session.scalars(select(Event).where(
        Event.kind == "delivery_failed", Event.created_at >= hour,
        Event.created_at <= now).order_by(Event.id)).all()
    return [e.data for e in events
            if e.data.get("dead") and e.data.get("kind") in DIGESTED_KINDS]


def _digest(dead: list[dict], hour: datetime, *, to: str, sender: str, message_id: str,
            now: datetime) -> bytes:
    """Names each mail (row, Message-ID, error), never its body; automatic (invariant 3)."""
    lines = [f"ticketd gave up {len(dead)} acknowledgement(s) between {hour:%H}:00 and "
             f"{hour + timedelta(hours=1):%H}:00 UTC, most often to senders whose address",
             "does not exist. Their addresses are marked bouncing when the server refused them.",
             ""]
    for data in dead[:_LISTED]:
        error = " ".join(str(data.get("error", "")).split())[:200]
        lines.append(f"outbox row {data.get('outbox_id')}  {data.get('message_id')}  {error}")
    if len(dead) > _LISTED:
        lines.append(f"... and {len(dead) - _LISTED} more")
    lines += ["", "All of them: ticketd outbox --state dead"]
    subject = f"ticketd: {len(dead)} acknowledgement(s) undeliverable, {hour:%Y-%m-%d %H}:00 UTC"
    return ops_notice(sender=sender, to=(to,), subject=subject, message_id=message_id, now=now,
                      text="\n".join(lines))
