"""The CSVs a report writes hold no formula a spreadsheet would run: a subject or category
from a player's mail that starts like one is written as text."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from responders.report_render import as_csv
from storage.reports import AdrCase, Figures, Period, Report

HOSTILE = ["=HYPERLINK(\"http://x.test\",\"win\")", "+1+cmd|' /C calc'!A0", "-2+3",
           "@SUM(A1:A2)", "\tindented=1", "\rcarriage"]


def report() -> Report:
    found = Report(Period(date(2026, 11, 1), date(2026, 11, 30)))
    found.total = Figures(complaints=len(HOSTILE))
    found.by_category = {text: Figures(complaints=1) for text in HOSTILE}
    found.adr_cases = [AdrCase("contact-1", 7, text, text, "IBAS", text,
                               datetime(2026, 11, 8, tzinfo=UTC), "pending", None)
                       for text in HOSTILE]
    return found


def cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


@pytest.mark.parametrize("profile", [None, "mga", "cga", "ukgc"])
def test_no_cell_starts_like_a_formula(profile: str | None) -> None:
    written = cells(as_csv(report(), profile))
    assert not [cell for cell in written if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_player_text_is_kept_behind_a_quote() -> None:
    rows = list(csv.DictReader(io.StringIO(as_csv(report(), "mga"))))
    assert [row["subject"] for row in rows] == ["'" + text for text in HOSTILE]
    categories = [row["category"] for row in csv.DictReader(io.StringIO(as_csv(report())))]
    assert categories == ["all", *sorted("'" + text for text in HOSTILE)]


def test_numbers_stay_numbers() -> None:
    rows = list(csv.DictReader(io.StringIO(as_csv(report()))))
    assert rows[0]["complaints"] == str(len(HOSTILE)) and rows[1]["complaints"] == "1"


def test_a_carriage_return_inside_a_subject_starts_no_row() -> None:
    found = report()
    found.adr_cases = [replace(found.adr_cases[0], subject="refund\r=cmd|' /C calc'!A0")]
    rows = list(csv.reader(io.StringIO(as_csv(found, "mga"), newline="")))
    assert len(rows) == 2 and rows[1][2] == "refund\r=cmd|' /C calc'!A0"
