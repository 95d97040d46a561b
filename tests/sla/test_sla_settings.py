"""[sla] settings as the clocks use them: policies, business hours, holidays, recipients."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from config import ConfigError, load_settings
from daemon import runtime
from daemon.sla import SlaOptions, start_clock
from responders.sla import Calendar, add_working_time
from tests.sla.conftest import HEAD, LEAD


def _options(tmp_path, env, sla: str) -> SlaOptions:  # noqa: ANN001
    return _runtime(tmp_path, env, sla).sla


def _runtime(tmp_path, env, sla: str) -> runtime.Runtime:  # noqa: ANN001
    path = tmp_path / "t.toml"
    path.write_text("\n".join([
        "[database]", 'url = "sqlite:///t.db"',
        "[support]", 'address = "support@casino.test"', 'default_language = "ru"',
        "[sla]", *(line.strip() for line in sla.splitlines()),
    ]), encoding="utf-8")
    return runtime.build(load_settings(path, env))


@pytest.fixture
def env() -> dict[str, str]:
    return {"TICKETD_SECURITY__SECRET": "k-0123456789abcdef"}


def test_the_promises_and_levels_come_from_the_settings(tmp_path, env) -> None:
    options = _options(tmp_path, env, 'warn_at = 75\nlevel2_after = "2h"\n'
                                   'first_response_urgent = "30m"')
    urgent = options.select("self_exclusion", "normal")
    assert (urgent.name, urgent.first_response) == ("urgent", timedelta(minutes=30))
    assert all(p.warn_at == 0.75 and p.level2_after == timedelta(hours=2)
               for p in options.policies.values())
    assert options.select("refund", "normal", appeal=True).name == "appeal"
    assert options.policy("removed-since").name == "default"
    assert options.calendar(datetime.now(UTC)) == Calendar()
    # Escalations are written in the desk's language: the identity's, from [support].
    assert _runtime(tmp_path, env, "").identity.language == "ru"


def test_each_level_falls_back_to_the_nearest_address_configured(tmp_path, env) -> None:
    lead_only = _options(tmp_path, env, f'team_lead_address = "{LEAD}"')
    assert [lead_only.recipients(stage) for stage in (1, 2, 3)] == [[LEAD], [LEAD], [LEAD]]
    head_only = _options(tmp_path, env, f'head_of_support_address = "{HEAD}"')
    assert [head_only.recipients(stage) for stage in (1, 2, 3)] == [[], [HEAD], [HEAD]]


def test_the_warning_goes_to_the_assignee_else_the_group_mailbox(tmp_path, env) -> None:
    options = _options(tmp_path, env, f'team_lead_address = "{LEAD}"\n'
                                      'warning_address = "desk@casino.test"\n'
                                      '[team]\ngroup_addresses = { payments = "pay@casino.test" }')
    group = options.group_address(None, "refund")  # [team] routing: refund -> payments
    assert group == "pay@casino.test" and options.group_address(None, "other") is None
    assert options.group_address("payments", "other") == group  # the ticket's own group wins
    assert options.recipients(1, assignee="ann@casino.test", group_address=group) == [
        "ann@casino.test"]
    assert options.recipients(1, group_address=group) == [group]
    assert options.recipients(1) == ["desk@casino.test"]
    assert options.recipients(2, assignee="ann@casino.test") == [LEAD]


def test_business_hours_and_holidays_move_the_due_time(tmp_path, env, sessions, new_ticket,
                                                       look) -> None:
    options = _options(tmp_path, env, """
        timezone = "Europe/Moscow"
        business_hours = { mon = "09:00-18:00", tue = "09:00-18:00", \
            wed = "09:00-13:00, 14:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }
        holidays = [2026-11-23]
    """)
    ticket = new_ticket()
    friday = datetime(2026, 11, 20, 14, tzinfo=UTC)  # 17:00 in Moscow
    with sessions.begin() as session:
        start_clock(session, ticket, "next_response", options.select("refund", "normal"),
                    options.calendar(friday), friday)
    # Friday 1h, Monday a holiday, Tuesday 9h, Wednesday 8h (lunch), Thursday 6h: 15:00 MSK.
    assert look.clock(ticket, "next_response").due_at == datetime(2026, 11, 26, 12,
                                                                   tzinfo=UTC)


def test_the_holidays_of_a_country_are_closed(tmp_path, env) -> None:
    options = _options(tmp_path, env, 'business_hours = { tue = "09:00-18:00", '
                                   'wed = "09:00-18:00", thu = "09:00-18:00" }\n'
                                   'holiday_country = "RU"')
    tuesday = datetime(2026, 11, 3, 17, tzinfo=UTC)
    calendar = options.calendar(tuesday)
    assert datetime(2026, 11, 4).date() in calendar.hours.holidays  # Unity Day
    assert add_working_time(tuesday, timedelta(hours=2), calendar) == datetime(
        2026, 11, 5, 10, tzinfo=UTC)  # 1h on Tuesday, none on the 4th, 1h on Thursday


@pytest.mark.parametrize(("line", "key"), [
    ("warn_at = 0.8", "sla.warn_at"),
    ('business_hours = { mon = "9-18" }', "sla.business_hours.mon"),
    ('holidays = ["1 May"]', "sla.holidays[0]"),
    ('timezone = "Moscow"', "sla.timezone"),
])
def test_mistakes_name_their_key(tmp_path, env, line: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _options(tmp_path, env, line)
    assert caught.value.key == key
