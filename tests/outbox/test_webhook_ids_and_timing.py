"""Webhook delivery ids come from their cause, the platform's Retry-After is honoured, and a
platform that never answers cannot make a second sender post the same row: rows in SQLite
or PostgreSQL, a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import func, select

from daemon.outbox import OutboxSender
from daemon.webhooks import WebhookTransport, queue_event, retry_after
from responders.webhooks import SELF_EXCLUSION, SLA_BREACHED, TICKET_CREATED, WebhookEvents
from responders.webhooks import delivery_id as derived
from storage.models import OutboxMessage
from storage.outbox import RETRY_CAP
from tests.outbox.smtp_sink import free_port
from tests.outbox.webhook_server import Platform, WebhookServer

KEY = b"webhook-test-key-0123456789abcdef"
DESK = "support@casino.test"


@pytest.fixture
def platform() -> Iterator[Callable[..., WebhookServer]]:
    started: list[WebhookServer] = []

    def start(answers: tuple = ()) -> WebhookServer:
        server = WebhookServer(Platform(answers), free_port()).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def queue(sessions, ticket_id: int, url: str, cause: str,  # noqa: ANN001
          event: str = TICKET_CREATED, desk: str = DESK,
          now: datetime | None = None) -> int | None:
    with sessions.begin() as session:
        return queue_event(session, WebhookEvents(url, desk=desk), event, ticket_id,
                           cause=cause, now=now)


def webhook_rows(sessions) -> list[tuple[int, str]]:  # noqa: ANN001
    with sessions() as session:
        return [tuple(r) for r in session.execute(
            select(OutboxMessage.id, OutboxMessage.message_id)
            .where(OutboxMessage.kind == "webhook").order_by(OutboxMessage.id))]


def test_the_same_cause_gives_one_row_and_one_id_delivered_once(sessions, ticket_id, clock,
                                                                 platform, look):
    server = platform()
    first = queue(sessions, ticket_id, server.url, "ingest-key-1", SELF_EXCLUSION, now=clock())
    again = queue(sessions, ticket_id, server.url, "ingest-key-1", SELF_EXCLUSION)  # a re-run
    assert first is not None and again == first
    [(row_id, delivery)] = webhook_rows(sessions)
    # What the receiver de-duplicates on is a function of the cause alone.
    assert delivery == derived(DESK, SELF_EXCLUSION, ticket_id, "ingest-key-1")
    assert delivery.startswith("evt_") and len(delivery) == 36
    assert len(look.events("webhook_queued")) == 1
    # Another cause, another event kind or another desk: another id.
    other = {derived(DESK, SELF_EXCLUSION, ticket_id, "ingest-key-2"),
             derived(DESK, TICKET_CREATED, ticket_id, "ingest-key-1"),
             derived("support@other-casino.test", SELF_EXCLUSION, ticket_id, "ingest-key-1"),
             derived(DESK, SELF_EXCLUSION, ticket_id + 1, "ingest-key-1")}
    assert delivery not in other and len(other) == 4
    sender = OutboxSender(sessions, None, ops_address=None, now=clock,
                          webhooks=WebhookTransport(server.url, (KEY,), timeout=5))
    assert asyncio.run(sender.run_once()).sent == 1
    queue(sessions, ticket_id, server.url, "ingest-key-1", SELF_EXCLUSION)  # after delivery
    assert asyncio.run(sender.run_once()).claimed == 0
    assert [r.delivery for r in server.platform.requests] == [delivery]


def test_a_cause_needs_a_name() -> None:
    with pytest.raises(ValueError, match="cause"):
        derived(DESK, SLA_BREACHED, 1, "")


@pytest.mark.parametrize(("answer", "wait"), [
    ((429, {"Retry-After": "120"}), timedelta(seconds=120)),
    ((503, {"Retry-After": "0"}), timedelta(0)),
    ((429, {"Retry-After": "86400"}), RETRY_CAP),  # bounded by the schedule's longest wait
    ((503, {"Retry-After": "tomorrow"}), None),  # unreadable: the stored schedule
])
def test_retry_after_in_seconds_sets_the_next_attempt(sessions, ticket_id, clock, platform, look,
                                                      answer, wait):
    server = platform((answer,))
    row_id = queue(sessions, ticket_id, server.url, "mail-1", now=clock())
    sender = OutboxSender(sessions, None, ops_address=None, now=clock,
                          webhooks=WebhookTransport(server.url, (KEY,), timeout=5))
    assert asyncio.run(sender.run_once()).retried == 1
    row = look.row(row_id)
    if wait is None:  # the schedule: one to five minutes after a first failure
        assert clock() + timedelta(minutes=1) <= row.next_attempt_at <= clock() + \
            timedelta(minutes=5)
    else:
        assert row.next_attempt_at == clock() + wait
    clock.advance(row.next_attempt_at - clock())
    assert asyncio.run(sender.run_once()).sent == 1
    assert [r.status for r in server.platform.requests] == [answer[0], 200]


def test_retry_after_as_an_http_date_sets_the_next_attempt(sessions, ticket_id, clock, platform,
                                                           look):
    back = clock() + timedelta(minutes=7)
    server = platform(((503, {"Retry-After": format_datetime(back, usegmt=True)}),))
    row_id = queue(sessions, ticket_id, server.url, "mail-1", now=clock())
    sender = OutboxSender(sessions, None, ops_address=None, now=clock,
                          webhooks=WebhookTransport(server.url, (KEY,), timeout=5))
    assert asyncio.run(sender.run_once()).retried == 1
    assert look.row(row_id).next_attempt_at == back
    clock.advance(timedelta(minutes=6))
    assert asyncio.run(sender.run_once()).claimed == 0  # not before the platform asked
    clock.advance(timedelta(minutes=1))
    assert asyncio.run(sender.run_once()).sent == 1


def test_retry_after_values() -> None:
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    assert retry_after("30", now) == timedelta(seconds=30)
    assert retry_after("Mon, 05 Jan 2026 12:02:00 GMT", now) == timedelta(minutes=2)
    assert retry_after("Mon, 05 Jan 2026 11:00:00 GMT", now) == timedelta(0)  # past
    for unreadable in (None, "", "-5", "soon", "²"):
        assert retry_after(unreadable, now) is None


def test_a_platform_that_never_answers_is_not_posted_twice_by_a_second_sender(
        sessions, ticket_id, platform, look):
    """The HTTP timeout (30 s) is far longer than the lease (3 s): the post is cut before
    the lease ends, so a second sender polling meanwhile never takes the row."""
    server = platform()
    server.platform.stall.set()
    row_id = queue(sessions, ticket_id, server.url, "mail-1")
    lease = timedelta(seconds=3)

    def a_sender() -> OutboxSender:
        return OutboxSender(sessions, None, ops_address=None, lease=lease,
                            webhooks=WebhookTransport(server.url, (KEY,), timeout=30))

    async def race() -> tuple[int, int]:
        first = asyncio.ensure_future(a_sender().run_once())
        await asyncio.to_thread(server.platform.arrived.wait, 30)
        second, passes = a_sender(), 0
        while not first.done():  # a second daemon, polling all the while
            assert (await second.run_once()).claimed == 0
            passes += 1
            await asyncio.sleep(0.2)
        stats = await first
        return stats.retried, passes

    retried, passes = asyncio.run(race())
    assert retried == 1 and passes >= 1
    row = look.row(row_id)
    assert (row.state, row.attempts, row.claimed_until) == ("pending", 1, None)
    assert "lease" in (row.last_error or "")
    assert row.next_attempt_at > datetime.now(UTC)  # the schedule decides, not the next pass
    assert len(server.platform.requests) == 1


def test_the_row_count_stays_one_per_cause_on_both_databases(sessions, ticket_id):
    url = "https://platform.test/hooks"
    for _ in range(3):
        for cause in ("a", "b"):
            queue(sessions, ticket_id, url, cause)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 2
