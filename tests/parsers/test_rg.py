"""Responsible-gambling phrases: the packaged data file loads, and what players write in
each supported language is found, while ordinary complaints are not."""

from __future__ import annotations

import pytest

from parsers.rg import INTENTS, load_phrases, responsible_gambling


def test_the_packaged_file_has_every_intent_in_every_language() -> None:
    import tomllib
    from importlib import resources

    data = tomllib.loads(resources.files("parsers").joinpath("rg_phrases.toml").read_text())
    for intent in INTENTS:
        assert set(data[intent]) >= {"en", "ru", "uk", "de", "es", "pt", "tr"}
    assert all(rule.keywords for rule in load_phrases())


@pytest.mark.parametrize("text, intent", [
    ("I have a gambling problem, please close my account and self-exclude me", "self_exclusion"),
    ("Please close my account.", "account_closure"),
    ("I think I am addicted to gambling", "gambling_harm"),
    ("Прошу закрыть мой счёт", "account_closure"),
    ("У меня игровая зависимость, прошу самоисключение", "self_exclusion"),
    ("Я лудоман, помогите", "gambling_harm"),
    ("Закрийте мій акаунт, будь ласка", "account_closure"),
    ("У мене ігрова залежність", "gambling_harm"),
    ("Bitte sperren Sie mich für ein Jahr", "self_exclusion"),
    ("Ich bin spielsüchtig", "gambling_harm"),
    ("Quiero cerrar mi cuenta", "account_closure"),
    ("Solicito la autoexclusión", "self_exclusion"),
    ("Quero encerrar a minha conta", "account_closure"),
    ("Tenho vício em jogos", "gambling_harm"),
    ("Lütfen HESABIMI KAPATIN", "account_closure"),
    ("Kumar bağımlısıyım", "gambling_harm"),
])
def test_phrases_are_found(text: str, intent: str) -> None:
    hit = responsible_gambling("", text)
    assert hit is not None and hit.intent == intent


@pytest.mark.parametrize("text", [
    "Please refund my deposit of 100 EUR",
    "My bet was settled wrongly, I want better odds",
    "Верните деньги за ставку",
    "Wo ist meine Auszahlung?",
])
def test_ordinary_complaints_are_not(text: str) -> None:
    assert responsible_gambling("Refund", text) is None


def test_the_subject_counts_too() -> None:
    assert responsible_gambling("Self-exclusion request", "see subject") is not None
