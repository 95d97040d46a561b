"""Agent replies as mail clients write them: the whole notification quoted below the answer."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import SMTP, default

AUTHSERV = "mx.casino.test"
PASS = f"{AUTHSERV}; dkim=pass header.d=casino.test; spf=pass smtp.mailfrom=casino.test"


def reply_to_notification(notification: bytes, body: str, *, layout: str = "thunderbird",
                          sender: str = "Anna Smirnova <anna@casino.test>",
                          auth: tuple[str, ...] = (PASS,), references: bool = True) -> bytes:
    note = email.message_from_bytes(notification, policy=default)
    quoted_text = note.get_body(("plain",)).get_content()
    msg = EmailMessage()
    for value in auth:  # our MTA prepends its header: the first one is the topmost
        msg["Authentication-Results"] = value
    msg["From"] = sender
    # Without references the spoofer knows no signed reply address either: plain support.
    msg["To"] = str(note["Reply-To"] or note["From"]) if references else "support@casino.test"
    msg["Subject"] = ("RE: " if layout == "outlook" else "Re: ") + str(note["Subject"])
    msg["Message-ID"] = email.utils.make_msgid(domain="casino.test")
    if references:
        msg["In-Reply-To"] = str(note["Message-ID"])
        if layout != "outlook":  # Outlook often sends no References
            msg["References"] = str(note["Message-ID"])
    if layout == "outlook":
        text = (f"{body}\n\n________________________________\nFrom: Casino Support "
                f"<support@casino.test>\nSent: Wednesday, November 25, 2026 7:00 PM\n"
                f"To: Anna Smirnova <anna@casino.test>\nSubject: {note['Subject']}\n\n{quoted_text}")
    else:
        quoted = "\n".join("> " + line for line in quoted_text.splitlines())
        text = f"{body}\n\nOn 25.11.2026 19:00, Casino Support wrote:\n{quoted}\n"
    msg.set_content(text)
    return msg.as_bytes(policy=SMTP)
