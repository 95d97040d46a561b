"""`ticketd report` on the fifty hand-counted complaints of tests/reports/desk50.py, in JSON
and CSV, with the regulators' layouts, on SQLite and PostgreSQL.

Every expected number below was counted by hand from the fixture's description; none is
computed by the code under test.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from daemon.cli import main
from storage import db
from tests.reports import desk50
from tests.support.configs import write_config

PERIOD = ("--from", "2026-11-02", "--to", "2026-11-15")
NO_TIMES = {"count": 0, "median_hours": None, "p90_hours": None}

# complaints: A 20 + B 15 + C 9 (k 0..8; k 9 came after the period) = 44
# acknowledged in time: A 18 (i 18, 19 late) + B 15 (j 13, 14 have no deadline) + C 0
#   (k 0..3 late, k 4..7 never, k 8 after the period) = 33
# final decisions in the period: A 10 + B 5 + D 5 = 20; in time: A 10 + B 3 + D 2 = 15
# disputes: A 4 + B 1 = 5; ADR referrals in the period: A 2 + D m 0 = 3 (D m 1 was in
#   October); outcomes in the period: not_upheld (A0), upheld (D0), settled (D1)
# time to first answer, 35 answered: A 1..20 h, B ten at 5 h and five at 48 h; sorted the
#   18th is 8, the 32nd (ceil(0.9*35)) is 48
# time to final, 20 decided: B five at 48, A ten at 100, D five at 336 (14 days); median
#   (10th+11th)/2 = 100, 18th = 336
EXPECTED = {
    "complaints": 44, "acknowledged_in_time": 33, "final_decisions": 20, "final_in_time": 15,
    "disputes": 5, "adr_referrals": 3, "deadline_extensions": 1,
    "adr_outcomes": {"upheld": 1, "partially_upheld": 0, "not_upheld": 1, "settled": 1,
                     "withdrawn": 0},
    "time_to_first_answer": {"count": 35, "median_hours": 8.0, "p90_hours": 48.0},
    "time_to_final": {"count": 20, "median_hours": 100.0, "p90_hours": 336.0},
}
# withdrawal = A + D: first answers 1..20 (median 10.5, 18th = 18); finals ten at 100 and
#   five at 336 (8th = 100, 14th = 336)
# bonus = B: first answers ten at 5, five at 48 (8th = 5, 14th = 48); finals five at 48
# account = C k 0..8: nothing answered, one extension
BY_CATEGORY = {
    "withdrawal": {
        "complaints": 20, "acknowledged_in_time": 18, "final_decisions": 15,
        "final_in_time": 12, "disputes": 4, "adr_referrals": 3, "deadline_extensions": 0,
        "adr_outcomes": {"upheld": 1, "partially_upheld": 0, "not_upheld": 1, "settled": 1,
                         "withdrawn": 0},
        "time_to_first_answer": {"count": 20, "median_hours": 10.5, "p90_hours": 18.0},
        "time_to_final": {"count": 15, "median_hours": 100.0, "p90_hours": 336.0},
    },
    "bonus": {
        "complaints": 15, "acknowledged_in_time": 15, "final_decisions": 5,
        "final_in_time": 3, "disputes": 1, "adr_referrals": 0, "deadline_extensions": 0,
        "adr_outcomes": {"upheld": 0, "partially_upheld": 0, "not_upheld": 0, "settled": 0,
                         "withdrawn": 0},
        "time_to_first_answer": {"count": 15, "median_hours": 5.0, "p90_hours": 48.0},
        "time_to_final": {"count": 5, "median_hours": 48.0, "p90_hours": 48.0},
    },
    "account": {
        "complaints": 9, "acknowledged_in_time": 0, "final_decisions": 0,
        "final_in_time": 0, "disputes": 0, "adr_referrals": 0, "deadline_extensions": 1,
        "adr_outcomes": {"upheld": 0, "partially_upheld": 0, "not_upheld": 0, "settled": 0,
                         "withdrawn": 0},
        "time_to_first_answer": NO_TIMES, "time_to_final": NO_TIMES,
    },
}


@pytest.fixture
def desk(db_url: str, tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    """A config file on a database holding the fifty tickets; their numbers by name."""
    engine = db.make_engine(db_url)
    with db.session_factory(engine).begin() as session:
        numbers = desk50.load(session)
    engine.dispose()
    yield write_config(tmp_path / "etc", db_url), numbers


@pytest.fixture
def report(desk: tuple[Path, dict[str, int]]) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        result = CliRunner().invoke(main, ["--config", str(desk[0]), "report", *PERIOD, *args])
        assert result.exit_code == 0, result.output
        return result

    return run


def test_json_figures_match_the_hand_count(report: Callable[..., Result]) -> None:
    doc = json.loads(report("--format", "json").stdout)
    assert doc["period"] == {"from": "2026-11-02", "to": "2026-11-15", "timezone": "UTC"}
    assert {key: doc[key] for key in EXPECTED} == EXPECTED
    assert doc["by_category"] == BY_CATEGORY  # "other", the A rows' category, is not used


def _csv_number(text: str) -> Any:
    return None if text == "" else float(text) if "." in text else int(text)


def test_csv_figures_match_the_hand_count(report: Callable[..., Result]) -> None:
    rows = {row["category"]: row for row in csv.DictReader(io.StringIO(
        report("--format", "csv").stdout))}
    assert list(rows) == ["all", "account", "bonus", "withdrawal"]
    for name, expected in [("all", EXPECTED), *BY_CATEGORY.items()]:
        row = {key: _csv_number(value) for key, value in rows[name].items() if key != "category"}
        first, final = expected["time_to_first_answer"], expected["time_to_final"]
        assert row == {
            **{key: expected[key] for key in ("complaints", "acknowledged_in_time",
                                              "final_decisions", "final_in_time", "disputes",
                                              "adr_referrals", "deadline_extensions")},
            **{f"adr_{key}": value for key, value in expected["adr_outcomes"].items()},
            "first_answer_count": first["count"],
            "first_answer_median_hours": first["median_hours"],
            "first_answer_p90_hours": first["p90_hours"],
            "final_count": final["count"], "final_median_hours": final["median_hours"],
            "final_p90_hours": final["p90_hours"],
        }, name


def test_ukgc_return_figures(report: Callable[..., Result]) -> None:
    doc = json.loads(report("--format", "json", "--profile", "ukgc").stdout)
    assert doc["regulator"] == {
        "profile": "ukgc", "complaints": 44, "disputes": 5, "disputes_referred_to_adr": 3,
        "adr_outcomes": EXPECTED["adr_outcomes"]}
    lines = report("--format", "csv", "--profile", "ukgc").stdout.splitlines()
    assert lines[:4] == ["figure,value", "complaints,44", "disputes,5",
                         "disputes_referred_to_adr,3"]
    assert "adr_outcomes.settled,1" in lines


def test_mga_list_of_disputes_referred_to_adr(report: Callable[..., Result],
                                              desk: tuple[Path, dict[str, int]]) -> None:
    """Referred in the period (A0, A1, D0) or concluded in it (D1, referred in October)."""
    numbers = desk[1]
    rows = list(csv.DictReader(io.StringIO(report("--format", "csv", "--profile", "mga").stdout)))
    assert [(int(r["ticket"]), r["entity"], r["reference"], r["outcome"], r["subject"])
            for r in rows] == [
        (numbers["D1"], "eCOGRA", "EC-0", "settled", "Complaint D1"),
        (numbers["A0"], "IBAS", "IB-0", "not_upheld", "Complaint A0"),
        (numbers["A1"], "IBAS", "IB-1", "pending", "Complaint A1"),
        (numbers["D0"], "eCOGRA", "EC-1", "upheld", "Complaint D0"),
    ]
    assert all(r["player_id"].startswith("contact-") for r in rows)
    assert [r["referred_at"][:10] for r in rows] == [
        "2026-10-25", "2026-11-08", "2026-11-08", "2026-11-10"]
    assert rows[2]["concluded_at"] == ""


def test_cga_summary(report: Callable[..., Result]) -> None:
    doc = json.loads(report("--format", "json", "--profile", "cga").stdout)["regulator"]
    assert doc == {
        "profile": "cga", "complaints": 44,
        "complaints_by_category": {"account": 9, "bonus": 15, "withdrawal": 20},
        "final_decisions": 20, "final_in_time": 15, "deadline_extensions": 1, "disputes": 5,
        "adr_referrals": 3, "adr_outcomes": EXPECTED["adr_outcomes"]}


def test_a_day_of_the_period_is_a_utc_day(desk: tuple[Path, dict[str, int]]) -> None:
    """Nov 15 alone: only C k 8, received at 23:59:59 UTC; its acknowledgement a minute
    later falls on the 16th and does not count."""
    result = CliRunner().invoke(main, ["--config", str(desk[0]), "report", "--from",
                                       "2026-11-15", "--to", "2026-11-15"])
    doc = json.loads(result.stdout)
    assert (doc["complaints"], doc["acknowledged_in_time"]) == (1, 0)
    assert list(doc["by_category"]) == ["account"]


def test_a_period_that_ends_before_it_starts_is_refused(
        desk: tuple[Path, dict[str, int]]) -> None:
    result = CliRunner().invoke(main, ["--config", str(desk[0]), "report", "--from",
                                       "2026-11-15", "--to", "2026-11-01"])
    assert result.exit_code == 2
    assert "--to" in result.output and "before --from" in result.output


def test_an_acknowledgement_after_the_period_end_is_not_in_time_for_that_period(
        report: Callable[..., Result]) -> None:
    """C k 8: received Nov 15 23:59:59, acknowledged a minute later, well within its 24 h.
    The report of a period ending Nov 15 reads nothing after it: not acknowledged in time,
    whatever its deadline; Nov 16 does not count it either (not received then); a period
    holding both days counts it in time. (README, "Reports".)"""
    def figures(first: str, last: str) -> tuple[int, int]:
        doc = json.loads(report("--from", first, "--to", last, "--format", "json").stdout)
        return doc["complaints"], doc["acknowledged_in_time"]

    assert figures("2026-11-15", "2026-11-15") == (1, 0)
    assert figures("2026-11-16", "2026-11-16") == (1, 0)  # k 9, never acknowledged
    assert figures("2026-11-15", "2026-11-16") == (2, 1)


def test_without_profile_the_report_takes_the_configured_one(
        desk: tuple[Path, dict[str, int]], db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cga", db_url,
                          complaints={"profile": "cga", "adr_entity": "Fair Play Adjudication"})

    def run(*args: str) -> dict[str, Any]:
        result = CliRunner().invoke(main, ["--config", str(config), "report", *PERIOD,
                                           "--format", "json", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert run()["regulator"]["profile"] == "cga"  # [complaints] profile
    assert run("--profile", "ukgc")["regulator"]["profile"] == "ukgc"  # the option wins
    assert "regulator" not in run("--profile", "none")

