"""sla.breached to the platform: queued by the monitor in the clock's own transaction, once per
breached clock, however often and however many monitors run; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import replace

from sqlalchemy import select

from daemon.sla import MonitorDesk, SlaMonitor
from responders.webhooks import SLA_BREACHED, WebhookEvents
from storage import db
from storage.models import OutboxMessage
from tests.sla.conftest import at

PLATFORM = WebhookEvents("https://platform.test/hooks")


def breaches(sessions) -> list[dict]:  # noqa: ANN001
    with sessions() as session:
        rows = session.execute(select(OutboxMessage.raw, OutboxMessage.event).where(
            OutboxMessage.kind == "webhook").order_by(OutboxMessage.id)).all()
    assert {event for _, event in rows} <= {SLA_BREACHED}
    return [json.loads(raw) for raw, _ in rows]


def test_a_breach_is_told_once_and_neither_the_warning_nor_level2_is(
        new_ticket, sessions, options, identity) -> None:
    monitor = SlaMonitor(sessions, MonitorDesk(replace(options, webhooks=PLATFORM), identity))
    new_ticket()
    monitor.run_once(at(hours=19, minutes=13))  # the warning
    assert breaches(sessions) == []
    monitor.run_once(at(hours=24, minutes=1))
    [told] = breaches(sessions)
    assert told["type"] == SLA_BREACHED and told["ticket"]["number"] >= 10001
    assert told["data"]["clock"] == "first_response"
    assert told["data"]["due_at"].startswith(at(hours=24).isoformat()[:16])
    assert "address" not in told["contact"]
    for hours in (24.1, 28.1, 28.2):  # level 2, and passes that find nothing new
        monitor.run_once(at(hours=hours))
    assert len(breaches(sessions)) == 1


def test_a_second_monitor_does_not_tell_it_again(new_ticket, sessions, options, identity,
                                                 db_url) -> None:
    desk = MonitorDesk(replace(options, webhooks=PLATFORM), identity)
    new_ticket()
    SlaMonitor(sessions, desk).run_once(at(hours=24, minutes=1))
    engine = db.make_engine(db_url)
    SlaMonitor(db.session_factory(engine), desk).run_once(at(hours=24, minutes=1))
    engine.dispose()
    assert len(breaches(sessions)) == 1


def test_a_breach_whose_mail_is_withheld_is_still_told(new_ticket, sessions, options,
                                                       identity) -> None:
    nobody = replace(options, warning_address=None, team_lead_address=None,
                     head_of_support_address=None, webhooks=PLATFORM)
    new_ticket()
    SlaMonitor(sessions, MonitorDesk(nobody, identity)).run_once(at(hours=24, minutes=1))
    assert len(breaches(sessions)) == 1


def test_without_webhooks_nothing_is_queued_for_the_platform(new_ticket, monitor,
                                                             sessions) -> None:
    new_ticket()
    monitor.run_once(at(hours=30))
    assert breaches(sessions) == []
