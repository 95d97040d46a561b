"""Durations and sizes in words, with Russian plural forms."""

from __future__ import annotations

from datetime import timedelta

import pytest

from responders.compose import localized_duration
from responders.wording import human_size, ru_plural


@pytest.mark.parametrize(
    ("hours", "russian", "english"),
    [
        (1, "1 час", "1 hour"),
        (2, "2 часа", "2 hours"),
        (4, "4 часа", "4 hours"),
        (5, "5 часов", "5 hours"),
        (11, "11 часов", "11 hours"),
        (12, "12 часов", "12 hours"),
        (21, "21 час", "21 hours"),
        (22, "22 часа", "22 hours"),
        (24, "24 часа", "24 hours"),
        (25, "25 часов", "25 hours"),
        (48, "2 дня", "2 days"),
        (120, "5 дней", "5 days"),
        (504, "21 день", "21 days"),
    ],
)
def test_hours_and_days(hours: int, russian: str, english: str) -> None:
    assert localized_duration(timedelta(hours=hours), "ru") == russian
    assert localized_duration(timedelta(hours=hours), "en") == english


@pytest.mark.parametrize(
    ("minutes", "nominative", "accusative", "genitive", "english"),
    [
        (1, "1 минута", "1 минуту", "1 минуты", "1 minute"),
        (2, "2 минуты", "2 минуты", "2 минут", "2 minutes"),
        (5, "5 минут", "5 минут", "5 минут", "5 minutes"),
        (11, "11 минут", "11 минут", "11 минут", "11 minutes"),
        (21, "21 минута", "21 минуту", "21 минуты", "21 minutes"),
        (90, "1 час 30 минут", "1 час 30 минут", "1 часа 30 минут", "1 hour 30 minutes"),
        (61, "1 час 1 минута", "1 час 1 минуту", "1 часа 1 минуты", "1 hour 1 minute"),
    ],
)
def test_minutes_in_each_case(minutes: int, nominative: str, accusative: str, genitive: str,
                              english: str) -> None:
    delta = timedelta(minutes=minutes)
    assert localized_duration(delta, "ru") == nominative
    assert localized_duration(delta, "ru-RU", case="accusative") == accusative
    assert localized_duration(delta, "ru", case="genitive") == genitive
    assert localized_duration(delta, "en") == english


def test_rounding_and_unknown_language() -> None:
    assert localized_duration(timedelta(seconds=1), "ru") == "1 минута"  # never sooner than set
    assert localized_duration(timedelta(minutes=59, seconds=30), "en") == "1 hour"
    assert localized_duration(timedelta(0), "en") == "0 minutes"
    assert localized_duration(timedelta(hours=24), "de") == "24 Stunden"
    assert localized_duration(timedelta(hours=24), "fr") == "24 hours"  # no French: English
    assert localized_duration(timedelta(hours=24), "ru", case="genitive") == "24 часов"


def test_ru_plural() -> None:
    forms = ("час", "часа", "часов")
    assert [ru_plural(n, *forms) for n in (0, 1, 2, 5, 11, 14, 21, 101, 111, 112, 1004)] == [
        "часов", "час", "часа", "часов", "часов", "часов", "час", "час", "часов", "часов", "часа"]


def test_human_size() -> None:
    assert human_size(1, "en") == "1 byte"
    assert human_size(3, "ru") == "3 байта"
    assert human_size(532, "ru") == "532 байта"
    assert human_size(500, "en") == "500 bytes"
    assert human_size(1536, "en") == "1.5 KB"
    assert human_size(1536, "ru") == "1,5 КБ"
    assert human_size(150 * 1024, "ru") == "150 КБ"
    assert human_size(3 * 1024 * 1024, "en") == "3.0 MB"
    assert human_size(5 * 1024**4, "en") == "5120 GB"
