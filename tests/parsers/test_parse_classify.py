"""Complaint category, priority and language."""

import time

import pytest

from parsers import DEFAULT_RULES, Rule, classify, detect_language


@pytest.mark.parametrize(
    ("subject", "text", "category", "priority"),
    [
        ("Возврат", "Прошу оформить возврат средств", "refund", "normal"),
        ("Re:", "Жду возврата уже неделю, с возвратом проблемы", "refund", "normal"),
        ("", "Платёж не прошёл, депозит не зачислен", "refund", "normal"),
        ("Where is my withdrawal?", "", "refund", "normal"),
        ("Chargeback", "I will file a chargeback", "refund", "normal"),
        ("", "Хочу обжаловать это решение", "appeal", "high"),
        ("Жалоба на решение службы", "", "appeal", "high"),
        ("", "Please escalate this to a manager", "appeal", "high"),
        ("GDPR request", "", "data_protection", "high"),
        ("", "Удалите мои персональные данные", "data_protection", "high"),
        ("", "Please delete my data", "data_protection", "high"),
        ("Self-exclusion", "", "self_exclusion", "urgent"),
        ("", "I have a gambling problem, please close my account", "self_exclusion", "urgent"),
        ("", "Прошу самоисключение на год", "self_exclusion", "urgent"),
        ("", "Ставка рассчитана неверно", "bet_settlement", "normal"),
        ("", "My bet was settled wrongly after a technical error", "bet_settlement", "normal"),
        ("Hello", "Just saying thanks", "other", "normal"),
    ],
)
def test_default_rules(subject, text, category, priority):
    result = classify(subject, text)
    assert (result.category, result.priority) == (category, priority)


def test_self_exclusion_beats_refund_when_both_appear():
    result = classify("Refund", "Refund my deposit and close my account, I have a gambling problem")
    assert result.category == "self_exclusion"
    assert result.priority == "urgent"


def test_priority_order_not_rule_order_decides():
    rules = (Rule("refund", "normal", ("refund",)), Rule("appeal", "high", ("appeal",)))
    assert classify("", "refund or appeal", rules).category == "appeal"


def test_matched_keyword_is_reported_as_written_in_the_rule():
    assert classify("", "Платёж").keyword == "платеж"
    assert classify("", "nothing here").keyword is None


def test_yo_is_normalised_in_keywords_and_text():
    rules = (Rule("x", "normal", ("счёт",)),)
    assert classify("", "СЧЕТ заблокирован", rules).category == "x"


def test_english_words_match_whole_words_with_regular_endings():
    rules = (Rule("bet", "normal", ("bet",)),)
    assert classify("", "the better option", rules).category == "other"
    assert classify("", "two bets", rules).category == "bet"


def test_star_marks_a_stem_in_english_too():
    rules = (Rule("esc", "high", ("escalat*",)),)
    assert classify("", "escalating now", rules).category == "esc"


def test_default_rules_cover_the_required_categories():
    categories = {rule.category for rule in DEFAULT_RULES}
    assert {"self_exclusion", "appeal", "data_protection", "refund", "bet_settlement"} <= categories


def test_classify_is_fast_on_long_text():
    text = "обычный текст без ключевых слов " * 20_000
    started = time.perf_counter()
    assert classify("", text).category == "other"
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("subject", "text", "language"),
    [
        ("Возврат", "Прошу вернуть деньги", "ru"),
        ("Refund", "Please return my money", "en"),
        ("Re: Withdrawal", "Здравствуйте, где мои деньги? Жду уже неделю. Order #123", "ru"),
        ("", "12345 !!!", None),  # nothing to go by: the caller's fallback decides
        ("Привет", "Long English text that dominates the letters of this message", "en"),
    ],
)
def test_detect_language(subject, text, language):
    assert detect_language(subject, text) == language
