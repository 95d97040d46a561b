"""Who an outgoing mail is from and to, and where it sits in a thread: checked once, here,
for every composer (acknowledgement, notification, relay, escalation)."""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage

from responders.headers import UnsafeRecipient, message_id_token, put_header, single_recipient

MAX_REFERENCES = 10  # the first and the newest: enough for every client to thread


def support_mailbox(support_address: str) -> str:
    support = single_recipient(support_address)
    if support is None:
        raise ValueError("the support address is not a valid mail address")
    return support


def recipient_mailbox(addr: str, support: str, who: str = "recipient") -> str:
    """One valid mailbox that is not our own (sub-addressed or not): a loop with ourselves."""
    recipient = single_recipient(addr)
    if recipient is None:
        raise UnsafeRecipient(f"the {who}'s address is not one valid mailbox")
    if same_mailbox(recipient, support):
        raise UnsafeRecipient(f"the {who} is our own address")
    return recipient


def same_mailbox(a: str, b: str) -> bool:
    return _mailbox(a) == _mailbox(b)


def _mailbox(addr: str) -> str:
    local, _, domain = addr.lower().rpartition("@")
    return f"{local.partition('+')[0]}@{domain}"


def thread_headers(msg: EmailMessage, in_reply_to: str | None, references: Sequence[str]) -> None:
    """In-Reply-To and References (RFC 5322 §3.6.4) from the ids that are safe to repeat."""
    parent = message_id_token(in_reply_to) if in_reply_to else None
    chain = [token for token in map(message_id_token, references) if token]
    if parent:
        chain.append(parent)
    chain = list(dict.fromkeys(chain))
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[1 - MAX_REFERENCES :]
    if parent:
        put_header(msg, "In-Reply-To", parent)
    if chain:
        put_header(msg, "References", " ".join(chain))
