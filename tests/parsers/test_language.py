"""Language identification on player mails held out from the benchmark's sample: each desk
language is recognised at least as often as its threshold says, and short or wordless
mails give None so that the contact's or the brand's language decides."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from parsers.language import DESK_LANGUAGES, detect, detect_language

HELD_OUT = Path(__file__).parent / "data" / "language_heldout.tsv"
# Share of the held-out mails (ten or so a language, many of them under 40 characters)
# that must come back right. Ukrainian, Uzbek and Azerbaijani are lower: a few words of
# them are also good Russian, Turkish or no desk language at all.
THRESHOLD = {"en": 0.9, "ru": 0.9, "uk": 0.6, "kk": 0.9, "uz": 0.7, "az": 0.7, "tr": 0.9,
             "de": 0.9, "es": 0.8, "pt": 0.8}


def _held_out() -> list[tuple[str, str, str]]:
    rows = []
    for line in HELD_OUT.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            language, kind, text = line.split("\t", 2)
            rows.append((language, kind, text))
    return rows


def test_every_desk_language_has_a_threshold_and_held_out_mails() -> None:
    assert set(THRESHOLD) == set(DESK_LANGUAGES)
    assert {language for language, _, _ in _held_out()} == set(DESK_LANGUAGES)


@pytest.mark.parametrize("language", DESK_LANGUAGES)
def test_held_out_mails_are_recognised(language: str) -> None:
    mails = [text for code, _, text in _held_out() if code == language]
    right = Counter(detect(text) == language for text in mails)
    assert right[True] / len(mails) >= THRESHOLD[language], right


def test_russian_in_latin_letters_is_russian() -> None:
    translit = [text for code, kind, text in _held_out() if kind == "translit"]
    assert translit and all(detect(text) == "ru" for text in translit)
    assert detect("zdravstvuite, verni dengi") == "ru"


def test_a_german_complaint_is_german() -> None:
    assert detect_language("Auszahlung fehlt", "Guten Tag, meine Auszahlung ist nicht da.") == "de"


@pytest.mark.parametrize("text", ["", "12345 !!!", "ok", "#55102 - 500 TL", "https://x.test/a"])
def test_too_little_to_go_by_is_none(text: str) -> None:
    assert detect(text) is None


def test_a_language_outside_the_desk_is_none_unless_asked_for() -> None:
    italian = "Buongiorno, vorrei il rimborso del mio deposito, i soldi non sono arrivati."
    assert detect(italian) is None  # then the contact's or the brand's language
    assert detect(italian, languages=(*DESK_LANGUAGES, "it")) == "it"


def test_the_answer_is_one_of_the_languages_asked_for() -> None:
    assert detect("Hesabımı kapatın, lütfen.", languages=("en", "ru")) in ("en", "ru", None)
    assert detect("Hesabımı kapatın, lütfen.", languages=("tr", "az")) == "tr"


def test_letters_only_one_desk_language_writes_decide() -> None:
    assert detect("hesabımı bağlayın, xahiş edirəm") == "az"
    assert detect("ақшамды қайтарыңыз") == "kk"
    assert detect("поверніть гроші, будь ласка, ї") == "uk"
    assert detect("pulimni qaytaring, iltimos, to'g'ri emas") == "uz"
    assert detect("I don't know why the dog's bet was voided") == "en"
