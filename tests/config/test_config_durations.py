from __future__ import annotations

from datetime import timedelta

import pytest

from config.durations import format_duration, parse_duration


@pytest.mark.parametrize(("text", "expected"), [
    ("45s", timedelta(seconds=45)),
    ("90m", timedelta(minutes=90)),
    ("24h", timedelta(hours=24)),
    ("1d12h", timedelta(days=1, hours=12)),
    ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
])
def test_durations_parsed(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "1.5h", "12h1d", "1h1h", "-1h", "1 h", "0s", 24])
def test_bad_durations_refused(text):
    with pytest.raises(ValueError, match="must be"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["45s", "90m", "1d12h", "1d2h3m4s"])
def test_format_duration_reads_back(text):
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)
    assert format_duration(timedelta(minutes=90)) == "1h30m"
