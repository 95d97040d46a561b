"""The outbox loop: claim due rows, send the mail over one SMTP connection and post the
webhooks over one HTTP client, settle the batch's rows together.

Outcomes are committed every `[outbox] commit_every` rows (default 1: each row right after
the server's answer) and when the batch is done or cut short (the lease running out, the
server down, no token). A crash repeats at most that many rows whose "250" (or "200") was
not yet recorded, each with
the same Message-ID (or delivery id), which lets the receiver drop it. Invariant 2 of
DESIGN.md; webhooks keep it the same way (DESIGN: every side effect goes through the outbox).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import make_msgid
from typing import TypeVar

import httpx
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from daemon import metrics
from daemon.dead_digest import DIGESTED_KINDS, bury_in_digest
from daemon.failpoints import failpoint
from daemon.webhooks import Answer, WebhookSession, WebhookTransport, WebhookUnreachable
from responders.ops_notice import ops_notice
from responders.transport import (
    DeliveryError,
    PermanentDeliveryError,
    SendResult,
    ServerUnavailable,
    SmtpSession,
    SmtpTransport,
    TokenUnavailable,
)
from storage import outbox
from storage.models import utcnow
from storage.outbox import ClaimedMail

log = logging.getLogger(__name__)
T = TypeVar("T")
# A pass that found no OAuth token gives its rows back for this long (the token keeper asks
# its endpoint at most every 30 s anyway).
TOKEN_WAIT = timedelta(minutes=1)


@dataclass
class DeliveryStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0  # claimed but left for the next pass (the lease was running out)


# What becomes of a row after one attempt: a small value, decided by pure functions below.
@dataclass(frozen=True)
class Sent:
    accepted: list[str]
    refused: dict[str, str]


@dataclass(frozen=True)
class Retry:
    error: str
    remaining: list[str] | None = None  # None: all recipients again
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    wait: timedelta | None = None  # the server's Retry-After; None: the stored schedule's


@dataclass(frozen=True)
class Dead:
    error: str
    refused: dict[str, str] = field(default_factory=dict)


Outcome = Sent | Retry | Dead


def outcome_of(result: SendResult) -> Sent | Retry:
    """Accepted recipients are done for good; 4xx ones are tried again alone."""
    later = result.temporarily_refused
    if not later:
        return Sent(result.accepted, result.permanently_refused)
    error = "; ".join(f"{r}: {result.refused[r]}" for r in later)
    return Retry(f"refused for now: {error}", later, result.accepted,
                 result.permanently_refused)


def outcome_of_answer(answer: Answer, url: str) -> Outcome:
    """2xx: delivered. 408, 429 and 5xx: the platform is busy or down for now; a 429 or 503
    says when to come back (Retry-After). Any other status (a 4xx, or a redirect, which is
    not followed) will not change by trying again."""
    if 200 <= answer.status < 300:
        return Sent([url], {})
    if answer.status in (429, 503):
        return Retry(answer.error, wait=answer.retry_after)
    if answer.status == 408 or answer.status >= 500:
        return Retry(answer.error)
    return Dead(answer.error)


def retry_at(outcome: Retry, attempts: int, now: datetime, expires_at: datetime,
             rng: random.Random) -> datetime:
    """When to try a row again: when the server asked (Retry-After), but never later than
    the schedule's longest wait; else the stored schedule. Never after the row's expiry, so
    that it is given up on time."""
    if outcome.wait is not None:
        wait = min(max(outcome.wait, timedelta(0)), outbox.RETRY_CAP)
        return min(now + wait, expires_at)
    return min(outbox.next_attempt(attempts, now, rng), expires_at)


def outcome_of_error(err: DeliveryError) -> Retry | Dead:
    if isinstance(err, PermanentDeliveryError):
        return Dead(str(err), err.refused)
    if err.refused:  # every recipient refused, some of them only for now
        result = SendResult([], err.refused)
        return Retry(str(err), result.temporarily_refused, [], result.permanently_refused)
    return Retry(str(err))


@dataclass(frozen=True)
class SenderSetup:
    """How the outbox is sent: the transports (with their credentials) and the sender's
    rules. `ops_address` (None: nobody) is told once about each row that is given up.
    Without `transport` ([smtp]) mail rows stay queued; without `webhooks` webhook rows do."""

    transport: SmtpTransport | None
    ops_address: str | None = None
    from_address: str = ""  # of the reports to ops; "" takes the ops address itself
    batch: int = 50
    lease: timedelta = timedelta(minutes=5)
    webhooks: WebhookTransport | None = None
    # Outcomes committed together: a commit per mail costs about as much as the mail, and
    # a crash may send this many twice (same Message-IDs).
    commit_every: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> SenderSetup:
        """The setup [smtp], [webhooks] and [outbox] describe; secrets as loaded."""
        if settings.smtp is None and settings.webhooks is None:
            raise ValueError("no [smtp] section nor [webhooks] in the configuration")
        smtp = SmtpTransport.from_settings(settings.smtp) if settings.smtp else None
        hooks = WebhookTransport.from_settings(settings.webhooks) if settings.webhooks else None
        return cls(smtp, settings.outbox.ops_address, settings.support.address,
                   settings.outbox.batch_size, settings.outbox.lease, hooks,
                   settings.outbox.commit_every)



class OutboxSender:
    """Sends the outbox. `now` is injectable so that tests move time instead of waiting.

    The setup is read once per pass (`following` takes a function giving the one in force),
    so one connection is made with one set of credentials, and a reload takes effect at the
    next pass, whole.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        transport: SmtpTransport | None,
        *,
        ops_address: str | None,
        from_address: str | None = None,
        batch: int = 50,
        lease: timedelta = timedelta(minutes=5),
        now: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        webhooks: WebhookTransport | None = None,
        commit_every: int = 1,
    ) -> None:
        setup = SenderSetup(transport, ops_address, from_address or ops_address or "", batch,
                            lease, webhooks, commit_every)
        self._sessions = sessions
        self._setup: Callable[[], SenderSetup] = lambda: setup
        # Outcomes of the batch in hand, written by _flush (one pass at a time per sender).
        self._unsettled: list[tuple[ClaimedMail, Outcome, datetime, datetime | None]] = []
        self._now = now
        self._rng = rng or random.Random()

    @classmethod
    def following(cls, sessions: sessionmaker[Session], setup: Callable[[], SenderSetup], *,
                  now: Callable[[], datetime] = utcnow,
                  rng: random.Random | None = None) -> OutboxSender:
        """A sender that asks `setup()` for the setup in force at the start of each pass."""
        first = setup()
        sender = cls(sessions, first.transport, ops_address=first.ops_address, now=now, rng=rng)
        sender._setup = setup
        return sender

    async def drain(self) -> DeliveryStats:
        """Pass after pass until nothing is due (`ticketd deliver --once`); the totals."""
        total = DeliveryStats()
        while True:
            stats = await self.run_once()
            for name, value in vars(stats).items():
                setattr(total, name, getattr(total, name) + value)
            # A pass that only gave its rows back would repeat itself forever.
            if stats.claimed == 0 or stats.released == stats.claimed:
                return total

    async def run(self, stop: asyncio.Event, interval: float | Callable[[], float] = 5,
                  wake: asyncio.Event | None = None) -> None:
        """Pass after pass until `stop` is set; a failed pass is logged and the loop goes on.
        `wake` (set when new mail is queued, or by a reload) starts the next pass before the
        interval ends; an interval given as a function is asked for at each pause."""
        wake = wake or asyncio.Event()
        seconds = interval if callable(interval) else (lambda: interval)
        while not stop.is_set():
            wake.clear()
            try:
                stats = await self.run_once()
            except Exception as err:  # noqa: BLE001 - the database may be down for a while
                # No traceback: a database error's text can carry statement parameters.
                log.error("outbox pass failed", extra={"fields": {"error": _describe(err)}})
                stats = DeliveryStats()
            if stats.claimed >= self._setup().batch:
                continue  # more is due: no pause
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
            await asyncio.wait(waiters, timeout=seconds(), return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def run_once(self) -> DeliveryStats:
        """Claim what is due, send it over one connection, settle each row."""
        setup = self._setup()  # one setup for the whole pass: one connection, one login
        started = self._now()
        mails = await self._db(lambda s: outbox.claim_due(
            s, started, setup.batch, setup.lease, mail=setup.transport is not None,
            webhooks=setup.webhooks is not None))
        stats = DeliveryStats(claimed=len(mails))
        counts = None
        if mails:
            # Half the lease: a mail still in flight when it ends would be taken by another
            # sender, and sent twice.
            counts = await self._send_all(setup, mails, started + setup.lease / 2, stats)
        if counts is None:  # nothing was settled, so the counts were not taken with it
            counts = await self._db(outbox.count_by_state)
        for state, count in counts.items():
            metrics.OUTBOX_ROWS.labels(state).set(count)
        return stats

    async def _send_all(self, setup: SenderSetup, rows: list[ClaimedMail], stop_at: datetime,
                        stats: DeliveryStats) -> dict[str, int] | None:
        """Send the batch, then settle it; the rows by state, counted in the settling
        transaction (None when there was nothing to settle)."""
        mails = [row for row in rows if not row.is_webhook]
        hooks = [row for row in rows if row.is_webhook]
        try:
            if mails and setup.transport is not None:  # the claim took mail only with [smtp]
                async with setup.transport.session() as smtp:
                    await self._each(setup, mails, stop_at, stats, ServerUnavailable,
                                     lambda mail: self._deliver(setup, smtp, mail, stats))
            if hooks and setup.webhooks is not None:
                async with setup.webhooks.session() as client:
                    await self._each(setup, hooks, stop_at, stats, WebhookUnreachable,
                                     lambda hook: self._post(setup, client, hook, stats))
        finally:  # whatever stopped the batch, what was sent is recorded
            counts = await self._flush(setup, stats)
        return counts

    async def _each(self, setup: SenderSetup, rows: Sequence[ClaimedMail], stop_at: datetime,
                    stats: DeliveryStats, down: type[Exception],
                    deliver: Callable[[ClaimedMail], Awaitable[None]]) -> None:
        """Deliver rows one by one until the lease runs short, or the server is `down`."""
        for index, row in enumerate(rows):
            if self._now() >= stop_at:
                rest = [r.id for r in rows[index:]]
                await self._db(lambda s, rest=rest: outbox.release(s, rest))
                stats.released += len(rest)
                return
            try:
                await deliver(row)
            except TokenUnavailable as err:  # our credentials, not the server: wait uncounted
                await self._hold(list(rows[index:]), str(err), stats)
                return
            except down as err:
                # Every other row would wait for the same timeouts: try them all later.
                for other in rows[index + 1:]:
                    await self._settle(setup, other, Retry(str(err)), stats)
                return

    async def _expired(self, setup: SenderSetup, mail: ClaimedMail, stats: DeliveryStats) -> bool:
        if mail.expires_at > self._now():
            return False
        tries = mail.attempts - 1
        error = f"expired after {tries} attempts; last error: {mail.last_error or '-'}"
        await self._settle(setup, mail, Dead(error), stats)
        return True

    async def _post(self, setup: SenderSetup, client: WebhookSession, hook: ClaimedMail,
                    stats: DeliveryStats) -> None:
        if await self._expired(setup, hook, stats):
            return
        # The post must be over, and its outcome committed, while the row is still ours:
        # past the lease another sender claims it and posts it a second time.
        within = (hook.claimed_until - self._now()).total_seconds() - _margin(setup.lease)
        if within <= 0:
            await self._db(lambda s: outbox.release(s, [hook.id]))
            stats.released += 1
            return
        metrics.WEBHOOK_ATTEMPTS.inc()
        try:
            answer = await client.post(hook.event or "", hook.message_id, hook.raw, self._now(),
                                       within)
        except WebhookUnreachable as err:
            await self._settle(setup, hook, Retry(str(err)), stats)
            raise
        except httpx.HTTPError as err:  # connected, then cut off, timed out, or garbled
            await self._settle(setup, hook, Retry(f"{type(err).__name__}: {err}"), stats)
            return
        except TimeoutError:  # no whole answer before the lease would run out
            error = f"no answer within {within:.1f} s (the outbox lease would run out)"
            await self._settle(setup, hook, Retry(error), stats)
            return
        failpoint("after-webhook-accept")  # as after "250": the one possible duplicate
        await self._settle(setup, hook, outcome_of_answer(answer, client.url), stats)

    async def _deliver(self, setup: SenderSetup, smtp: SmtpSession, mail: ClaimedMail,
                       stats: DeliveryStats) -> None:
        if await self._expired(setup, mail, stats):
            return
        metrics.DELIVERY_ATTEMPTS.inc()
        try:
            result = await smtp.send(mail.envelope_from, mail.recipients, mail.raw)
        except TokenUnavailable:
            raise  # our credentials, not this mail: _send_all holds the batch, uncounted
        except DeliveryError as err:
            await self._settle(setup, mail, outcome_of_error(err), stats)
            if isinstance(err, ServerUnavailable):
                raise
            return
        failpoint("after-smtp-accept")  # the crash that makes the one possible duplicate
        await self._settle(setup, mail, outcome_of(result), stats)

    async def _hold(self, mails: list[ClaimedMail], error: str, stats: DeliveryStats) -> None:
        """No OAuth token: the failure is ours, so the rows keep their attempts and their
        lifetime and wait, however long, until sending works again."""
        ids = [m.id for m in mails]
        now = self._now()
        await self._db(lambda s: outbox.hold(s, ids, now + TOKEN_WAIT, error, now))
        stats.released += len(ids)
        log.warning("outbox held: no smtp token", extra={"fields": {
            "mails": len(ids), "error": _redact(error)}})

    async def _settle(self, setup: SenderSetup, mail: ClaimedMail, outcome: Outcome,
                      stats: DeliveryStats) -> None:
        """Note the outcome of one row; `_flush` writes the batch's together."""
        now = self._now()
        next_at = None
        if isinstance(outcome, Retry):  # never later than the expiry: given up on time
            next_at = retry_at(outcome, mail.attempts, now, mail.expires_at, self._rng)
        self._unsettled.append((mail, outcome, now, next_at))
        if len(self._unsettled) >= setup.commit_every:  # bounds what a crash sends twice
            await self._flush(setup, stats, count=False)

    async def _flush(self, setup: SenderSetup, stats: DeliveryStats,
                     count: bool = True) -> dict[str, int] | None:
        """Write the noted outcomes in one transaction; count and log them once committed.
        The rows by state, counted in the same transaction (None: nothing to write, or not
        asked to count)."""
        pending, self._unsettled = self._unsettled, []
        if not pending:
            return None

        def write(session: Session) -> dict[str, int] | None:
            _write_outcomes(session, setup, pending)
            return outbox.count_by_state(session) if count else None

        counts = await self._db(write)
        for mail, outcome, _, next_at in pending:
            _tell(mail, outcome, next_at, stats)
        return counts

    async def _db(self, work: Callable[[Session], T]) -> T:
        """One short transaction, off the event loop (SQLite may wait for its write lock)."""
        def run() -> T:
            with self._sessions.begin() as session:
                return work(session)

        return await asyncio.to_thread(run)


def _write_outcomes(session: Session, setup: SenderSetup,
                    pending: list[tuple[ClaimedMail, Outcome, datetime, datetime | None]]) -> None:
    """The rows sent in one executemany; the rarer retries and dead rows one by one."""
    sent = [(mail.id, outcome.accepted, outcome.refused, now)
            for mail, outcome, now, _ in pending if isinstance(outcome, Sent)]
    outbox.mark_sent_many(session, sent)
    for mail, outcome, now, next_at in pending:
        match outcome:
            case Retry(error, remaining, accepted, refused):
                assert next_at is not None
                outbox.mark_retry(session, mail.id, error, next_at, remaining=remaining,
                                  accepted=accepted, refused=refused)
            case Dead(error, refused):
                _bury(session, setup, mail, error, refused, now)


def _tell(mail: ClaimedMail, outcome: Outcome, next_at: datetime | None,
          stats: DeliveryStats) -> None:
    """Count and log one committed outcome."""
    match outcome:
        case Sent():
            stats.sent += 1
            log.debug(_said(mail, "sent"), extra={"fields": {
                "id": mail.id, "kind": mail.kind, "attempts": mail.attempts}})
        case Retry(error):
            stats.retried += 1
            log.info(_said(mail, "deferred"), extra={"fields": {
                "id": mail.id, "kind": mail.kind, "attempts": mail.attempts,
                "next": next_at.isoformat() if next_at else "", "error": _redact(error)}})
        case Dead(error):
            stats.dead += 1
            log.warning(_said(mail, "given up"), extra={"fields": {
                "id": mail.id, "kind": mail.kind, "attempts": mail.attempts,
                "error": _redact(error)}})
    metrics.DELIVERIES.labels(type(outcome).__name__.lower()).inc()
    if mail.is_webhook:
        metrics.WEBHOOK_DELIVERIES.labels(type(outcome).__name__.lower()).inc()


def _margin(lease: timedelta) -> float:
    """Seconds kept back from a lease to commit a post's outcome: a tenth of it."""
    return lease.total_seconds() / 10


def _bury(session: Session, setup: SenderSetup, mail: ClaimedMail, error: str,
          refused: dict[str, str], now: datetime) -> None:
    outbox.mark_dead(session, mail.id, error, now, refused=refused)
    # One report per dead row, in the same transaction; never about a report (no loops), and
    # none without [smtp] to send it.
    ops, sender = setup.ops_address, setup.from_address or setup.ops_address or ""
    mailer = setup.transport is not None  # a desk of webhooks only has no mail to report by
    if mail.kind in DIGESTED_KINDS:  # junk senders' dead acks: one report an hour
        bury_in_digest(session, refused, ops=ops if mailer else None, sender=sender, now=now)
    elif ops and mail.kind != "ops" and mailer:
        message_id, raw = dead_letter_notice(mail, error, to=ops, sender=sender, now=now)
        outbox.enqueue(session, raw=raw, message_id=message_id, kind="ops",
                       envelope_from=sender, recipients=[ops], ticket_id=mail.ticket_id,
                       now=now)


def dead_letter_notice(mail: ClaimedMail, error: str, *, to: str, sender: str,
                       now: datetime) -> tuple[str, bytes]:
    """(Message-ID, bytes) of the report to operations that a mail was given up.

    It names the mail, never copies its body, and is marked as automatic (invariant 3).
    """
    domain = sender.rpartition("@")[2] or "localhost"
    message_id = make_msgid(idstring=f"outbox-dead-{mail.id}", domain=domain)
    what = f"webhook {mail.event}" if mail.is_webhook else f"{mail.kind} mail"
    text = "\n".join([
        f"ticketd gave up delivering an outgoing {'webhook' if mail.is_webhook else 'mail'}.",
        "",
        f"outbox row:  {mail.id}",
        f"kind:        {mail.kind}",
        f"ticket id:   {mail.ticket_id if mail.ticket_id is not None else '-'}",
        f"Message-ID:  {mail.message_id}",
        f"recipients:  {', '.join(mail.recipients)}",
        f"attempts:    {mail.attempts}",
        f"error:       {' '.join(error.split())}",
        "",
        f"To try again: ticketd outbox retry {mail.id}",
    ])
    return message_id, ops_notice(sender=sender, to=(to,), message_id=message_id, now=now,
                                  subject=f"ticketd: undeliverable {what} (outbox #{mail.id})",
                                  text=text)


def _said(row: ClaimedMail, what: str) -> str:
    """The log message: "mail sent", "webhook deferred" ... (two constant phrases each)."""
    return f"{'webhook' if row.is_webhook else 'mail'} {what}"


_ADDRESS = re.compile(r"[^\s<>:;,\"]+@[^\s<>:;,\"]+")


def _redact(text: str) -> str:
    """Server replies name recipients; the log says what happened, the database to whom."""
    return _ADDRESS.sub("<address>", text)


def _describe(err: BaseException) -> str:
    text = str(err).splitlines()[0][:300] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
