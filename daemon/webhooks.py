"""Webhooks in the daemon: queued with their cause, posted by the outbox loop.

`queue_event` runs in the transaction of what caused the event (a ticket opened, a player
asking to be excluded, a clock breached), so the event exists exactly when its cause was
committed. `WebhookTransport` posts one claimed row over HTTPS with httpx: one client (and
so one pool of connections) per outbox pass, the signature made at each attempt.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.schema import WebhooksSettings
from responders import webhooks as hooks
from responders.webhooks import TicketFacts, WebhookEvents
from storage import outbox
from storage.models import Contact, Ticket, utcnow

__all__ = ["Answer", "UnusableCaFile", "WebhookTransport", "WebhookUnreachable", "queue_event"]


def events_of(settings: WebhooksSettings | None, desk: str = "") -> WebhookEvents | None:
    """What [webhooks] asks to be queued for the desk of support address `desk`; None
    without the section."""
    if settings is None:
        return None
    return WebhookEvents(settings.url, frozenset(settings.events), desk)


def queue_event(session: Session, policy: WebhookEvents | None, event: str, ticket_id: int, *,
                cause: str, now: datetime | None = None,
                data: Mapping[str, Any] | None = None) -> int | None:
    """Queue `event` about the ticket when [webhooks] asks for it; the outbox row id.

    `cause` names what made the event (the ingest key of a mail, a clock): its delivery id
    is derived from it, so queuing the same cause again (a second path to the same event, a
    re-run) finds the row already there and adds nothing."""
    if policy is None or not policy.wants(event):
        return None
    delivery = hooks.delivery_id(policy.desk, event, ticket_id, cause)
    known = outbox.webhook_row(session, delivery)
    if known is not None:
        return known
    facts = _facts(session, ticket_id)
    now = now or utcnow()
    body = hooks.event_body(event, delivery, now, facts, data)
    return outbox.enqueue_webhook(session, body=body, delivery_id=delivery, event=event,
                                  url=policy.url, ticket_id=ticket_id, now=now)


def _facts(session: Session, ticket_id: int) -> TicketFacts:
    row = session.execute(
        select(Ticket.number, Ticket.category, Ticket.priority, Ticket.requester_id,
               Contact.address, Ticket.brand)
        .outerjoin(Contact, Contact.id == Ticket.requester_id)
        .where(Ticket.id == ticket_id)).one()
    return TicketFacts(row.number, row.category, row.priority, row.requester_id, row.address,
                       row.brand)


class UnusableCaFile(ValueError):
    """[webhooks] ca_file holds no certificate that TLS can use."""


class WebhookUnreachable(Exception):
    """No connection to the platform: every other webhook of the pass would wait the same."""


@dataclass(frozen=True)
class Answer:
    """The platform's reply to one post."""

    status: int
    text: str  # the reason phrase and the start of the body, for the row's last_error
    retry_after: timedelta | None = None  # its Retry-After, from the time of the post

    @property
    def error(self) -> str:
        return f"HTTP {self.status} {self.text}".strip()


@dataclass(frozen=True)
class WebhookTransport:
    url: str
    keys: tuple[bytes, ...] = field(repr=False)
    timeout: float = 10
    tls: ssl.SSLContext | None = None  # trusting [webhooks] ca_file; None: the system's CAs

    @classmethod
    def from_settings(cls, settings: WebhooksSettings) -> WebhookTransport:
        """The transport of [webhooks]; UnusableCaFile when its CA file cannot be used, so
        that the mistake shows at start (or reload), not at the first event."""
        return cls(settings.url, settings.keys, settings.timeout,
                   trusting(str(settings.ca_file)) if settings.ca_file else None)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[WebhookSession]:
        """One client for a pass. No redirect is followed (a moved endpoint is a setting to
        change, not a place to send signed events to), and no proxy from the environment."""
        verify: ssl.SSLContext | bool = self.tls or True
        async with httpx.AsyncClient(timeout=self.timeout, verify=verify, trust_env=False,
                                     follow_redirects=False) as client:
            yield WebhookSession(self, client)


def trusting(ca_file: str) -> ssl.SSLContext:
    """A client context that verifies the platform's certificate and name against `ca_file`."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
        raise UnusableCaFile(f"{ca_file} holds no usable PEM certificate: {err}") from None


class WebhookSession:
    def __init__(self, transport: WebhookTransport, client: httpx.AsyncClient) -> None:
        self._transport = transport
        self._client = client

    @property
    def url(self) -> str:
        return self._transport.url

    async def post(self, event: str, delivery_id: str, body: bytes, now: datetime,
                   within: float | None = None) -> Answer:
        """Post one event, signed at `now`, the whole exchange over within `within` seconds
        (the transport's timeout when None or longer). httpx's timeout bounds each read, not
        the exchange: a platform that trickles its answer would hold the row past its lease,
        and another sender would post it again; TimeoutError then. WebhookUnreachable when
        no connection is made; httpx.TransportError when one broke."""
        signed = hooks.signature(self._transport.keys, body, int(now.timestamp()))
        limit = self._transport.timeout if within is None else min(within,
                                                                    self._transport.timeout)
        try:
            async with asyncio.timeout(limit):
                reply = await self._client.post(
                    self.url, content=body, headers=hooks.headers(event, delivery_id, signed))
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            raise WebhookUnreachable(f"{type(err).__name__}: {err}") from None
        text = " ".join(f"{reply.reason_phrase} {reply.text[:200]}".split())
        return Answer(reply.status_code, text[:300],
                      retry_after(reply.headers.get("retry-after"), now))


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A Retry-After header (RFC 9110: delay-seconds or an HTTP date) as a wait from `now`;
    None when absent or unreadable. A date in the past is no wait."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdecimal():
        return timedelta(seconds=min(int(value), 10**9))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; one without a zone is read so too
        when = when.replace(tzinfo=now.tzinfo)
    return max(when - now, timedelta(0))
