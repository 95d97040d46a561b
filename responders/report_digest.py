"""The weekly digest to the head of support: the week's figures as text, the chart of
complaints per week by category (the last weeks, for the trend) as a PNG, and the week's
whole HTML report attached.

Pure: the report, the desk's identity and the recipient in, an EmailMessage out. The
Message-ID is a function of the desk and the week, so a second digest of the same week
is refused by the outbox's unique Message-ID: that is what makes it once per week, with
any number of daemons.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from responders import report_charts as charts
from responders.headers import (
    UnsafeRecipient,
    put_header,
    set_address_header,
    set_text_header,
    single_recipient,
)
from responders.identity import Identity
from responders.mime import File, set_body
from responders.report_render import as_html, as_text
from storage.reports import Report


@dataclass(frozen=True)
class Digest:
    week: str  # "2026-W49", the ISO week reported
    report: Report
    now: datetime
    trend: Report | None = None  # a longer period for the chart (the last weeks)


def digest_message_id(identity: Identity, week: str) -> str:
    """`<...>`-less Message-ID of the digest of `week`: the same for the same desk and week."""
    domain = identity.address.rpartition("@")[2] or "localhost"
    tag = hashlib.sha256(f"{identity.address.lower()}\0{week}".encode()).hexdigest()[:16]
    return f"digest.{week}.{tag}@{domain}"


def digest_mail(digest: Digest, identity: Identity, *, to: str) -> EmailMessage:
    """Raises UnsafeRecipient when `to` is not one mailbox or is the support address."""
    support = single_recipient(identity.address)
    recipient = single_recipient(to)
    if support is None:
        raise ValueError("the support address is not a valid mail address")
    if recipient is None or recipient.lower() == support.lower():
        raise UnsafeRecipient("the digest address is not one mailbox other than the desk's")
    period = digest.report.period
    msg = EmailMessage(policy=SMTP)
    set_address_header(msg, "From", identity.name, support)
    set_address_header(msg, "To", "", recipient)
    set_text_header(msg, "Subject", f"Complaints, week {digest.week} "
                    f"({period.first.isoformat()} to {period.last.isoformat()})")
    put_header(msg, "Date", format_datetime(digest.now))
    put_header(msg, "Message-ID", f"<{digest_message_id(identity, digest.week)}>")
    put_header(msg, "Auto-Submitted", "auto-generated")  # RFC 3834 §5
    put_header(msg, "X-Auto-Response-Suppress", "All")
    put_header(msg, "X-Ticketd-Loop", support)  # if it ever comes back, it is ours
    chart = charts.png(charts.weekly_by_category(digest.trend or digest.report))
    set_body(msg, as_text(digest.report), files=[
        File(f"complaints-{digest.week}.png", "image/png", chart),
        File(f"report-{digest.week}.html", "text/html", as_html(digest.report).encode()),
    ])
    return msg
