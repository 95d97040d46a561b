"""Webhooks through the outbox, end to end: rows in SQLite or PostgreSQL, a real HTTP server
on loopback that fails and recovers, a clock the test moves. The same promises as mail:
delivered once by delivery id, retried on the stored schedule, given up and reported once."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from daemon.outbox import Dead, OutboxSender, Retry, Sent, outcome_of_answer
from daemon.webhooks import Answer, UnusableCaFile, WebhookTransport, queue_event, trusting
from responders.webhooks import EVENTS, SELF_EXCLUSION, TICKET_CREATED, WebhookEvents, verify
from storage import db, queries
from storage.crypto import MasterKeys
from storage.models import OutboxMessage
from storage.vault import Vault
from tests.outbox.smtp_sink import (
    free_port,
    self_signed_certificate,
    server_tls_context,
    transport_to,
)
from tests.outbox.webhook_server import Platform, WebhookServer
from tests.support.configs import write_config

KEY = b"webhook-test-key-0123456789abcdef"
OPS = "ops@casino.test"


@pytest.fixture
def platform() -> Iterator[Callable[..., WebhookServer]]:
    """platform(answers=(), port=None) -> a started HTTP server on loopback."""
    started: list[WebhookServer] = []

    def start(answers: tuple[int, ...] = (), port: int | None = None) -> WebhookServer:
        server = WebhookServer(Platform(answers), port or free_port()).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def url_of(port: int) -> str:
    return f"http://127.0.0.1:{port}/hooks/ticketd"


def sender(sessions, url, clock, smtp_port=None, **options) -> OutboxSender:  # noqa: ANN001
    transport = transport_to(smtp_port) if smtp_port else None
    defaults = {"ops_address": OPS, "from_address": "support@casino.test", "now": clock,
                "webhooks": WebhookTransport(url, (KEY,), timeout=5)}
    return OutboxSender(sessions, transport, **defaults | options)


def deliver(outbox_sender: OutboxSender):  # noqa: ANN201
    return asyncio.run(outbox_sender.run_once())


_causes = itertools.count(1)


def hook(sessions: sessionmaker[Session], ticket_id: int, clock, url: str,  # noqa: ANN001
         event: str = TICKET_CREATED) -> tuple[int, str]:
    """Queue one event about the ticket, of a cause of its own; (row id, delivery id)."""
    with sessions.begin() as session:
        row_id = queue_event(session, WebhookEvents(url), event, ticket_id, now=clock(),
                             cause=f"test cause {next(_causes)}")
        assert row_id is not None
        return row_id, session.get(OutboxMessage, row_id).message_id


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_503_twice_then_200_arrives_once_signed_on_the_stored_schedule(
        sessions, clock, ticket_id, platform, look):
    server = platform((503, 503))
    row_id, delivery = hook(sessions, ticket_id, clock, server.url, SELF_EXCLUSION)
    outbox_sender = sender(sessions, server.url, clock)
    for attempt in (1, 2):
        assert deliver(outbox_sender).retried == 1
        row = look.row(row_id)
        assert (row.state, row.attempts, row.event) == ("pending", attempt, SELF_EXCLUSION)
        assert "HTTP 503" in (row.last_error or "")
        assert row.next_attempt_at > clock()
        assert deliver(outbox_sender).claimed == 0  # not before its time
        clock.advance(row.next_attempt_at - clock())
    assert deliver(outbox_sender).sent == 1
    row = look.row(row_id)
    assert (row.state, row.attempts, row.accepted) == ("sent", 3, [server.url])
    requests = server.platform.requests
    assert [r.status for r in requests] == [503, 503, 200]
    assert {r.delivery for r in requests} == {delivery}  # the same id every attempt
    assert len({r.body for r in requests}) == 1  # and the same body
    [taken] = server.platform.delivered()
    assert taken.event == SELF_EXCLUSION and taken.path == "/hooks/ticketd"
    assert taken.headers["content-type"] == "application/json"
    # Signed at the attempt's own time: a receiver with the key and a clock accepts it.
    now = int(clock().timestamp())
    assert taken.signature.startswith(f"t={now},v1=")
    assert verify(KEY, taken.body, taken.signature, now)
    assert not verify(b"another-key-0123456789abcdef", taken.body, taken.signature, now)
    event = taken.json()
    assert (event["id"], event["type"]) == (delivery, SELF_EXCLUSION)
    assert event["ticket"] == {"number": 10001, "category": "other", "priority": "normal",
                               "brand": "default"}
    assert event["contact"]["address"] == "player@mail.test"
    clock.advance(timedelta(days=1))
    assert deliver(outbox_sender).claimed == 0
    assert len(server.platform.delivered()) == 1


def test_platform_down_then_up_delivers_every_event_once(sessions, clock, ticket_id, platform,
                                                         look):
    port = free_port()  # nothing listens here for now
    queued = [hook(sessions, ticket_id, clock, url_of(port))[1] for _ in range(3)]
    outbox_sender = sender(sessions, url_of(port), clock)
    stats = deliver(outbox_sender)
    assert (stats.claimed, stats.retried, stats.sent) == (3, 3, 0)
    pending = look.rows("pending")
    assert all(r.attempts == 1 and "ConnectError" in (r.last_error or "") for r in pending)
    server = platform(port=port)
    assert deliver(outbox_sender).claimed == 0  # the schedule, not the server, decides
    clock.advance(max(r.next_attempt_at for r in pending) - clock())
    assert deliver(outbox_sender).sent == 3
    assert sorted(r.delivery for r in server.platform.delivered()) == sorted(queued)
    assert {r.state for r in look.rows()} == {"sent"}


@pytest.mark.parametrize(("status", "outcome"), [
    (200, Sent), (204, Sent), (408, Retry), (429, Retry), (500, Retry), (503, Retry),
    (400, Dead), (401, Dead), (404, Dead), (410, Dead), (301, Dead),
])
def test_which_answers_are_tried_again(status: int, outcome: type) -> None:
    assert type(outcome_of_answer(Answer(status, "x"), "https://p.test/h")) is outcome


def test_400_is_dead_at_once_recorded_and_reported_once(sessions, clock, ticket_id, platform,
                                                        smtp_server, look):
    server = platform((400,))
    sink = smtp_server()
    row_id, delivery = hook(sessions, ticket_id, clock, server.url)
    dead_before = metric("ticketd_webhook_deliveries_total", result="dead")
    outbox_sender = sender(sessions, server.url, clock, smtp_port=sink.port)
    assert deliver(outbox_sender).dead == 1
    row = look.row(row_id)
    assert (row.state, row.attempts) == ("dead", 1) and "HTTP 400" in (row.last_error or "")
    [event] = look.events("delivery_failed")
    assert event.ticket_id == ticket_id and event.data["kind"] == "webhook"
    assert metric("ticketd_webhook_deliveries_total", result="dead") == dead_before + 1
    assert deliver(outbox_sender).sent == 1  # the report to ops, by mail
    [report] = sink.handler.received
    assert report.rcpt_tos == (OPS,)
    assert f"undeliverable webhook {TICKET_CREATED}".encode() in report.content
    assert delivery.encode() in report.content
    for _ in range(3):  # no retry of the dead row, and no second report
        clock.advance(timedelta(hours=2))
        assert deliver(outbox_sender).claimed == 0
    assert len(server.platform.requests) == 1 and len(sink.handler.received) == 1


def test_an_event_past_its_lifetime_is_given_up(sessions, clock, ticket_id, platform, look):
    server = platform((503,) * 100)
    with sessions.begin() as session:  # a short life, as [outbox] lifetime could give
        row_id = queue_event(session, WebhookEvents(server.url), TICKET_CREATED, ticket_id,
                             now=clock(), cause="mail 1")
        session.get(OutboxMessage, row_id).expires_at = clock() + timedelta(minutes=30)
    outbox_sender = sender(sessions, server.url, clock)
    deliver(outbox_sender)
    passes = 1
    while (row := look.row(row_id)).state == "pending" and passes < 50:
        assert row.next_attempt_at <= row.expires_at
        clock.advance(row.next_attempt_at - clock())
        deliver(outbox_sender)
        passes += 1
    assert row.state == "dead" and "expired" in (row.last_error or "")
    assert "HTTP 503" in (row.last_error or "")
    assert server.platform.delivered() == []


def test_each_sender_takes_only_what_it_can_deliver(sessions, clock, ticket_id, queue, platform,
                                                    smtp_server, look):
    server, sink = platform(), smtp_server()
    hook_id, _ = hook(sessions, ticket_id, clock, server.url)
    mail_id, message_id = queue(ticket_id=ticket_id)
    mail_only = OutboxSender(sessions, transport_to(sink.port), ops_address=None, now=clock)
    assert deliver(mail_only).sent == 1
    assert sink.handler.message_ids() == [message_id]
    assert (look.row(hook_id).state, look.row(hook_id).attempts) == ("pending", 0)
    webhooks_only = sender(sessions, server.url, clock, ops_address=None)
    assert deliver(webhooks_only).sent == 1
    assert look.row(hook_id).state == "sent" and len(server.platform.delivered()) == 1
    assert len(sink.handler.received) == 1


def test_the_body_is_sealed_with_the_players_key_and_posted_in_clear(db_url, clock, platform):
    engine = db.make_engine(db_url)
    sessions = db.session_factory(engine, Vault(MasterKeys.of((bytes(range(32)),))))
    with sessions.begin() as session:
        who = queries.contact_id(session, "player@mail.test", "Player")
        ticket_id = queries.insert_ticket(session, subject="Close my account",
                                          requester_id=who)[0]
    server = platform()
    row_id, _ = hook(sessions, ticket_id, clock, server.url, SELF_EXCLUSION)
    with sessions() as session:
        stored = session.get(OutboxMessage, row_id)
        assert stored.key_id is not None and b"player@mail.test" not in stored.raw
    assert deliver(sender(sessions, server.url, clock)).sent == 1
    [taken] = server.platform.delivered()
    assert taken.json()["contact"]["address"] == "player@mail.test"
    engine.dispose()


def test_an_event_the_settings_do_not_ask_for_is_not_queued(sessions, ticket_id, clock, look):
    only_breaches = WebhookEvents("https://p.test/h", frozenset({"sla.breached"}))
    with sessions.begin() as session:
        assert queue_event(session, only_breaches, TICKET_CREATED, ticket_id,
                           cause="m") is None
        assert queue_event(session, None, TICKET_CREATED, ticket_id, cause="m") is None
        assert queue_event(session, WebhookEvents("https://p.test/h"), TICKET_CREATED,
                           ticket_id, cause="m") is not None
    assert [r.kind for r in look.rows()] == ["webhook"]
    [queued] = look.events("webhook_queued")
    assert queued.data["event"] == TICKET_CREATED and set(EVENTS) >= {queued.data["event"]}


def test_two_senders_on_postgresql_deliver_each_event_once(pg_url, clock, platform):
    engine = db.make_engine(pg_url)
    sessions = db.session_factory(engine)
    with sessions.begin() as session:
        who = queries.contact_id(session, "player@mail.test", "Player")
        ticket_id = queries.insert_ticket(session, subject="Refund", requester_id=who)[0]
    server = platform()
    queued = {hook(sessions, ticket_id, clock, server.url)[1] for _ in range(60)}
    start = threading.Barrier(2)
    totals: list[int] = []

    def run() -> None:
        outbox_sender = sender(sessions, server.url, clock, batch=7)
        start.wait()
        totals.append(asyncio.run(outbox_sender.drain()).sent)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    deliveries = Counter(r.delivery for r in server.platform.requests)
    assert set(deliveries) == queued and set(deliveries.values()) == {1}  # none twice
    assert sum(totals) == 60
    with sessions() as session:
        states = session.scalars(select(OutboxMessage.state)).all()
    assert set(states) == {"sent"}
    engine.dispose()


def test_the_listing_shows_webhook_rows(sessions, clock, ticket_id, look):
    hook(sessions, ticket_id, clock, "https://platform.test/hooks", SELF_EXCLUSION)
    [row] = look.rows()
    shown = row.as_dict()
    assert (shown["kind"], shown["event"], shown["recipients"]) == (
        "webhook", SELF_EXCLUSION, ["https://platform.test/hooks"])
    assert json.dumps(shown)


def test_ticketd_deliver_on_a_desk_without_smtp_posts_the_webhooks(
        db_url, tmp_path, sessions, clock, ticket_id, queue, platform, ticketd, look):
    server = platform((503,))
    row_id, delivery = hook(sessions, ticket_id, clock, server.url)
    mail_id, _ = queue(ticket_id=ticket_id)
    config = str(write_config(tmp_path, db_url, webhooks={"url": server.url}))
    env = {"TICKETD_WEBHOOKS__SECRET": KEY.decode()}
    done = ticketd("--config", config, "deliver", "--once", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == ["sent=0", "deferred=1", "dead=0"]
    assert look.row(mail_id).attempts == 0  # no [smtp]: the mail waits, untouched
    listed = ticketd("--config", config, "outbox", "--state", "pending", env=env).stdout.decode()
    assert f"event={TICKET_CREATED}" in listed and "HTTP 503" in listed
    assert KEY.decode() not in done.stderr.decode() + listed
    with sessions.begin() as session:  # due now, as the schedule would make it later
        session.get(OutboxMessage, row_id).next_attempt_at = clock()
    assert ticketd("--config", config, "deliver", "--once", env=env).returncode == 0
    assert [r.delivery for r in server.platform.delivered()] == [delivery]
    assert (look.row(row_id).state, look.row(mail_id).state) == ("sent", "pending")


def test_over_https_the_platform_is_verified_against_ca_file(sessions, clock, ticket_id,
                                                              tmp_path, look):
    cert, key = self_signed_certificate(tmp_path)
    server = WebhookServer(Platform(), free_port(), server_tls_context(cert, key)).start()
    try:
        row_id, delivery = hook(sessions, ticket_id, clock, server.url)
        system_cas = sender(sessions, server.url, clock)  # a certificate nobody vouches for
        assert deliver(system_cas).retried == 1
        assert "CERTIFICATE_VERIFY_FAILED" in (look.row(row_id).last_error or "")
        assert server.platform.requests == []  # nothing was said to an unverified server
        clock.advance(look.row(row_id).next_attempt_at - clock())
        pinned = WebhookTransport(server.url, (KEY,), timeout=5, tls=trusting(str(cert)))
        assert deliver(sender(sessions, server.url, clock, webhooks=pinned)).sent == 1
        assert [r.delivery for r in server.platform.delivered()] == [delivery]
    finally:
        server.stop()


def test_a_ca_file_that_is_no_certificate_is_refused_at_once(tmp_path):
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(UnusableCaFile, match="no usable PEM certificate"):
        trusting(str(junk))


def test_a_crash_after_the_200_posts_once_more_with_the_same_delivery_id(
        db_url, tmp_path, sessions, clock, ticket_id, platform, ticketd, look):
    server = platform()
    row_id, delivery = hook(sessions, ticket_id, clock, server.url)
    config = str(write_config(tmp_path, db_url, webhooks={"url": server.url},
                              outbox={"lease": "1s"}))
    env = {"TICKETD_WEBHOOKS__SECRET": KEY.decode()}
    crashed = ticketd("--config", config, "deliver", "--once",
                      env=env | {"TICKETD_FAILPOINT": "after-webhook-accept"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert [r.delivery for r in server.platform.delivered()] == [delivery]  # taken ...
    row = look.row(row_id)
    assert (row.state, row.attempts) == ("pending", 1)  # ... but never recorded
    assert row.claimed_until is not None
    time.sleep(max(0.0, (row.claimed_until - datetime.now(UTC)).total_seconds()) + 0.2)
    assert ticketd("--config", config, "deliver", "--once", env=env).returncode == 0
    # One duplicate at most, with the id the platform de-duplicates on.
    assert [r.delivery for r in server.platform.delivered()] == [delivery, delivery]
    assert (look.row(row_id).state, look.row(row_id).attempts) == ("sent", 2)


def test_a_daemon_with_webhooks_and_no_smtp_runs_the_sender_and_the_sla_monitor(
        sqlite_url, tmp_path):
    from config import load_settings
    from daemon import app as app_mod
    from daemon.service import Service

    only_hooks = write_config(tmp_path / "a", sqlite_url,
                              webhooks={"url": "https://platform.test/hooks"})
    neither = write_config(tmp_path / "b", sqlite_url)
    env = {"TICKETD_WEBHOOKS__SECRET": KEY.decode()}
    application = app_mod.build(load_settings(only_hooks, env))
    try:
        assert set(Service(application)._tasks()) == {"outbox", "sla", "records"}
        sender_setup = application.runtime.sender
        assert sender_setup is not None and sender_setup.transport is None
    finally:
        application.engine.dispose()
    application = app_mod.build(load_settings(neither, {}))
    try:
        assert Service(application)._tasks() == {}  # as before: nothing to do
    finally:
        application.engine.dispose()
