"""The complaint rules as values: deadlines per profile, the guard's points, the one
extension, the dispute after a final decision (daemon/complaint_rules.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from daemon import complaint_rules as rules
from responders.complaint_profiles import PROFILES, profile

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # a Friday
WEEK = timedelta(weeks=1)
UKGC, CGA = PROFILES["ukgc"], PROFILES["cga"]


def facts(profile_name: str = "ukgc", category: str = "refund",
          **changes: object) -> rules.ComplaintFacts:
    values = rules.opened(PROFILES[profile_name], category, T0)
    base = rules.ComplaintFacts(state="complaint", received_at=T0,
                                final_due_at=values["final_due_at"], category=category)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_each_profile_sets_its_deadlines_from_receipt() -> None:
    ukgc = rules.opened(UKGC, "refund", T0)
    assert ukgc["ack_due_at"] == T0 + timedelta(hours=24)
    assert ukgc["final_due_at"] == T0 + 8 * WEEK
    assert ukgc["next_action_at"] == T0 + 6 * WEEK  # the first reminder
    cga = rules.opened(CGA, "refund", T0)
    assert (cga["ack_due_at"], cga["final_due_at"]) == (T0 + WEEK, T0 + 4 * WEEK)
    none = rules.opened(PROFILES["none"], "refund", T0)
    assert none["final_due_at"] is None and none["next_action_at"] is None


def test_a_responsible_gambling_complaint_under_cga_is_due_the_next_business_day() -> None:
    due = rules.opened(CGA, "self_exclusion", T0)["final_due_at"]
    assert due == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # Friday -> Monday
    assert rules.guard_points(CGA, due, T0) == [("deadline", due)]  # no reminder before receipt


def test_the_guard_reminds_at_weeks_six_and_seven_then_sends_the_letter_once() -> None:
    state = facts()
    assert rules.plan(state, UKGC, T0 + 6 * WEEK - timedelta(seconds=1)).sends == ()
    step = rules.plan(state, UKGC, T0 + 6 * WEEK)
    assert (step.sends, step.to_stage, step.next_action_at) == (("2w before",), 1, T0 + 7 * WEEK)
    step = rules.plan(replace(state, stage=2), UKGC, T0 + 8 * WEEK)
    assert (step.sends, step.to_stage, step.next_action_at) == (("deadline",), 3, None)
    assert rules.plan(replace(state, stage=3), UKGC, T0 + 9 * WEEK).sends == ()


def test_a_monitor_that_was_down_sends_the_letter_without_reminders_of_the_past() -> None:
    step = rules.plan(facts(), UKGC, T0 + 10 * WEEK)
    assert step.sends == ("deadline",) and step.to_stage == 3


def test_a_decided_complaint_has_nothing_for_the_guard() -> None:
    assert rules.plan(facts(state="final"), UKGC, T0 + 9 * WEEK).sends == ()


def test_an_extension_is_allowed_once_and_only_where_the_profile_has_one() -> None:
    state = facts("cga")
    assert rules.refusal(state, CGA, "extend", T0 + WEEK) == ""
    change = rules.extend(state, CGA, "waiting for the bank", T0 + WEEK)
    assert change.values["final_due_at"] == T0 + 8 * WEEK
    assert change.event == {"reason": "waiting for the bank",
                            "final_due_at": (T0 + 8 * WEEK).isoformat()}
    assert change.values["next_action_at"] == T0 + 7 * WEEK  # the reminder moved with it
    extended = replace(state, extended_at=T0 + WEEK, final_due_at=T0 + 8 * WEEK)
    assert "only once" in rules.refusal(extended, CGA, "extend", T0 + 2 * WEEK)
    assert "allows no extension" in rules.refusal(facts(), UKGC, "extend", T0 + WEEK)
    assert "has passed" in rules.refusal(state, CGA, "extend", T0 + 5 * WEEK)


def test_final_is_given_once_and_says_whether_it_was_in_time() -> None:
    change = rules.final(facts(), "anna@casino.test", T0 + 3 * WEEK)
    assert change.values["state"] == "final" and change.values["next_action_at"] is None
    assert change.event["in_time"] is True and change.event["by"] == "anna@casino.test"
    assert rules.final(facts(), "anna@casino.test", T0 + 9 * WEEK).event["in_time"] is False
    assert rules.final(facts(), "guard", T0 + 8 * WEEK).event["in_time"] is False
    assert "already given" in rules.refusal(facts(state="final"), UKGC, "final", T0)


def test_only_a_final_decision_can_be_disputed() -> None:
    assert rules.dispute(facts(), T0) is None
    assert rules.dispute(facts(state="final"), T0).values["state"] == "dispute"  # type: ignore[union-attr]


def test_an_adr_outcome_needs_a_referral_first() -> None:
    assert "no ADR referral" in rules.refusal(facts(state="dispute"), UKGC, "adr-outcome", T0)
    assert rules.refusal(facts(state="adr"), UKGC, "adr-outcome", T0) == ""
    assert "already recorded" in rules.refusal(facts(adr_referred_at=T0), UKGC, "adr", T0)


def test_working_days_skip_weekends() -> None:
    assert rules.add_business_days(T0, 10) == datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    assert rules.enquiry_due(UKGC, T0) == datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    assert rules.enquiry_due(CGA, T0) is None


def test_overrides_replace_only_what_is_given() -> None:
    mine = profile("ukgc", final_within=6 * WEEK, extension=None)
    assert mine.final_within == 6 * WEEK and mine.ack_within == UKGC.ack_within


# --- waiting on the player (UKGC: the 8 weeks may stop while the player is asked) --------

def test_a_pause_stops_the_guard_and_its_length_moves_the_deadline_and_the_reminders() -> None:
    asked = T0 + 3 * WEEK
    pause = rules.pause(facts(), UKGC, asked)
    assert pause is not None and pause.values == {"paused_at": asked, "next_action_at": None}
    paused = facts(paused_at=asked)
    assert rules.plan(paused, UKGC, T0 + 9 * WEEK).sends == ()  # nothing while it waits
    resume = rules.resume(paused, UKGC, asked + 2 * WEEK)
    assert resume is not None
    assert resume.values["final_due_at"] == T0 + 10 * WEEK
    assert resume.values["paused_at"] is None and resume.values["paused_seconds"] == 1209600
    assert resume.values["next_action_at"] == T0 + 8 * WEEK  # "2w before" moved too
    assert resume.event["paused_seconds"] == 1209600
    assert rules.resume(facts(), UKGC, asked) is None  # it was not paused


def test_what_does_not_pause() -> None:
    asked = T0 + WEEK
    assert rules.pause(facts("cga"), CGA, asked) is None  # the profile does not allow it
    assert rules.pause(facts(paused_at=T0), UKGC, asked) is None  # already waiting
    assert rules.pause(facts(state="final"), UKGC, asked) is None
    assert rules.pause(facts(), UKGC, T0 + 8 * WEEK) is None  # the deadline has passed
    rg = replace(facts(category="self_exclusion"), final_due_at=T0 + WEEK)
    assert rules.pause(rg, UKGC, asked - timedelta(days=1)) is None  # the fast lane never waits


def test_a_final_decision_while_waiting_counts_the_pause_for_in_time() -> None:
    paused = facts(paused_at=T0 + 7 * WEEK)
    change = rules.final(paused, "anna@casino.test", T0 + 9 * WEEK)
    assert change.event["in_time"] is True  # 8 weeks of running clock, 2 of waiting
    assert change.values["final_due_at"] == T0 + 10 * WEEK and change.values["paused_at"] is None


def test_an_adr_enquiry_keeps_its_reminder_through_final_referral_merge_and_pause() -> None:
    enquiry = T0 + 2 * WEEK
    waiting = facts(enquiry_due_at=enquiry)
    assert rules.final(waiting, "anna@casino.test", T0 + WEEK).values["next_action_at"] == enquiry
    referral = rules.adr_referral(waiting, "IBAS", "IB-1", T0 + WEEK)
    assert referral.values["next_action_at"] == enquiry
    assert rules.merged_away(waiting).values["next_action_at"] == enquiry
    assert rules.pause(waiting, UKGC, T0 + WEEK).values["next_action_at"] == enquiry  # type: ignore[union-attr]
    assert rules.final(facts(), "anna@casino.test", T0 + WEEK).values["next_action_at"] is None


# --- the responsible-gambling fast lane, later in the conversation ----------------------

def test_a_complaint_that_becomes_a_self_exclusion_gets_the_fast_lane_from_then() -> None:
    later = T0 + WEEK  # a Friday again
    change = rules.fast_lane(facts("cga"), CGA, later)
    assert change is not None
    assert change.values["final_due_at"] == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # Monday
    assert change.values["category"] == "self_exclusion"
    assert change.values["next_action_at"] == change.values["final_due_at"]
    assert rules.fast_lane(facts("ukgc"), UKGC, later) is None  # no fast lane in the profile
    assert rules.fast_lane(facts("cga", category="self_exclusion"), CGA, later) is None
    soon = facts("cga", final_due_at=later + timedelta(hours=2))
    assert rules.fast_lane(soon, CGA, later).values["final_due_at"] == later + timedelta(hours=2)  # type: ignore[union-attr]


# --- business days where the desk is ----------------------------------------------------

def test_business_days_are_the_desks_weekdays_not_utcs() -> None:
    friday_evening = datetime(2026, 11, 20, 20, 0, tzinfo=UTC)  # Saturday 09:00 in Auckland
    assert rules.add_business_days(friday_evening, 1) == datetime(2026, 11, 23, 20, 0,
                                                                  tzinfo=UTC)
    # Monday 09:00 in Auckland is Sunday 20:00 UTC
    assert rules.add_business_days(friday_evening, 1, "Pacific/Auckland") == datetime(
        2026, 11, 22, 20, 0, tzinfo=UTC)
    desk = profile("cga", timezone="Pacific/Auckland")
    assert rules.opened(desk, "self_exclusion", friday_evening)["final_due_at"] == datetime(
        2026, 11, 22, 20, 0, tzinfo=UTC)
    assert rules.enquiry_due(profile("ukgc", timezone="Pacific/Auckland"), friday_evening) \
        == datetime(2026, 12, 3, 20, 0, tzinfo=UTC)  # ten weekdays of Auckland's


# --- when a complaint was received -------------------------------------------------------

def test_receipt_is_the_mailboxs_time_else_a_plausible_date_else_now() -> None:
    now = T0 + timedelta(hours=5)
    delivered, dated = T0 - timedelta(days=3), T0 - timedelta(hours=1)
    assert rules.received_moment(delivered, dated, now) == delivered
    assert rules.received_moment(now + timedelta(hours=1), dated, now) == now  # clock skew
    assert rules.received_moment(None, dated, now) == dated
    assert rules.received_moment(None, now + timedelta(days=2), now) == now  # a future Date
    assert rules.received_moment(None, now - timedelta(days=30), now) == now  # implausible
    assert rules.received_moment(None, None, now) == now


def test_a_merged_away_complaint_is_terminal() -> None:
    paused = facts("cga", paused_at=T0 + WEEK)
    change = rules.merged_away(paused)
    assert change.values == {"state": "merged", "paused_at": None, "next_action_at": None}
    merged = replace(paused, state="merged", paused_at=None)
    assert rules.resume(replace(merged, paused_at=T0 + WEEK), CGA, T0 + 2 * WEEK) is None
    assert rules.plan(merged, CGA, T0 + 9 * WEEK).sends == ()
    assert rules.fast_lane(merged, CGA, T0 + 2 * WEEK) is None
    assert "merged into another" in rules.refusal(merged, CGA, "extend", T0 + WEEK)
    assert rules.merged_away(facts(state="final")).values.get("state") is None
