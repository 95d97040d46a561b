"""Complaint category and priority from a mail's subject and text (language: parsers/language.py).

Rules are data: an ordered tuple of keyword lists that a deployment may
replace. A keyword is a sequence of words matched against the text's words.
Russian words are stems, so "возврат" also finds "возврата" and "возвратом"
(choose stems with that in mind: "ставк", not "ставка"); English words take
the regular endings (-s, -es, -d, -ed, -ing, -al), so "bet" does not find
"better"; a word ending in "*" is a stem in any language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

PRIORITIES = ("urgent", "high", "normal", "low")
FALLBACK_CATEGORY = "other"
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")


@dataclass(frozen=True)
class Rule:
    category: str
    priority: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class Classification:
    category: str
    priority: str
    keyword: str | None  # the rule keyword that matched; None for the fallback


# fmt: off
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("self_exclusion", "urgent", (
        "self-exclusion", "self-exclude", "exclude myself", "account closure",
        "close my account", "closing my account", "delete my account", "block my account",
        "responsible gaming", "responsible gambling", "gambling problem", "problem gambling",
        "gambling addiction", "addicted to gambling", "cooling-off period",
        "самоисключ", "закрыть мой аккаунт", "закройте мой аккаунт", "закрыть аккаунт",
        "закройте аккаунт", "закрыть счет", "закройте счет", "закрытие счета",
        "закрытие аккаунта", "заблокируйте мой", "заблокировать мой", "ответственная игра",
        "ответственной игр", "игровая зависимость", "игровой зависимост", "лудоман",
        "зависимость от азартных",
    )),
    Rule("appeal", "high", (
        "appeal", "escalate", "escalation", "dispute the decision",
        "complaint about the decision", "ombudsman",
        "обжал", "апелляц", "жалоба на решение", "жалобу на решение",
        "не согласен с решением", "не согласна с решением",
    )),
    Rule("data_protection", "high", (
        "gdpr", "personal data", "delete my data", "erase my data", "data protection",
        "subject access request", "right to be forgotten",
        "персональн данн", "удалить мои данные", "удалите мои данные", "защит данных",
    )),
    Rule("refund", "normal", (
        "refund", "payment", "deposit", "withdrawal", "withdraw", "chargeback", "charge back",
        "payout", "cash out", "cashout", "money back",
        "возврат", "вернуть деньги", "верните деньги", "вывод средств", "вывод денег",
        "вывести средства", "вывести деньги", "платеж", "оплат", "депозит", "пополнени",
        "списани", "выплат", "деньги не пришли", "не пришли деньги",
    )),
    Rule("bet_settlement", "normal", (
        "bet settled", "bet was settled", "settled wrong", "settled wrongly",
        "settled incorrectly", "wrongly settled", "incorrectly settled", "settlement",
        "technical error", "void bet", "voided", "bet slip", "betslip", "wager",
        "ставк", "рассчитан неверно", "неверно рассчитан", "рассчитали неверно",
        "неправильно рассчитан", "ошибк", "коэффициент",
    )),
)
# fmt: on


def _normalise(text: str) -> str:
    return text.lower().replace("ё", "е")


@dataclass(frozen=True)
class _Keyword:
    rank: int  # position of its rule in priority order
    rule: Rule
    text: str
    words: tuple[tuple[str, bool], ...]  # (stem, is_prefix)


class _Matcher:
    """Keywords indexed by their first word, so each text word costs a few dict lookups.

    Python's regular expressions try every alternative at every position; one
    alternation of a hundred keywords took over a millisecond per 7 KB of text.
    """

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.exact: dict[str, list[_Keyword]] = {}
        self.prefix: dict[str, list[_Keyword]] = {}
        # sorted() is stable: among equal priorities, the rule order decides.
        ordered = sorted(rules, key=lambda rule: _rank(rule.priority))
        for rank, rule in enumerate(ordered):
            for text in rule.keywords:
                self._add(_Keyword(rank, rule, text, _keyword_words(text)))
        self.lengths = sorted({len(stem) for stem in self.prefix})

    def _add(self, keyword: _Keyword) -> None:
        if not keyword.words:
            return
        stem, is_prefix = keyword.words[0]
        forms = [stem] if is_prefix else [stem + ending for ending in _ENDINGS]
        index = self.prefix if is_prefix else self.exact
        for form in forms:
            index.setdefault(form, []).append(keyword)

    def candidates(self, word: str) -> list[_Keyword]:
        found = list(self.exact.get(word, ()))
        for length in self.lengths:
            if length > len(word):
                break
            found.extend(self.prefix.get(word[:length], ()))
        return found


_ENDINGS = ("", "s", "es", "d", "ed", "ing", "al")
_PUNCTUATION = "!\"#$%&'()*+,./:;<=>?@[\\]^_`{|}~«»„“”‘’…–—•·№"
_WORD = re.compile(r"[^\W_]+")  # for keywords only: the text is split with str.split


def _keyword_words(keyword: str) -> tuple[tuple[str, bool], ...]:
    """Russian words (and any word ending in "*") are stems; English words take
    only the regular endings, so "bet" does not find "better"."""
    words = []
    for token in re.split(r"[\s\-]+", _normalise(keyword)):
        stem = "".join(_WORD.findall(token))
        if stem:
            words.append((stem, token.endswith("*") or bool(_CYRILLIC.search(stem))))
    return tuple(words)


def _word_matches(word: str, stem: str, is_prefix: bool) -> bool:
    if is_prefix:
        return word.startswith(stem)
    return word.startswith(stem) and word[len(stem) :] in _ENDINGS


@lru_cache(maxsize=32)
def _matcher(rules: tuple[Rule, ...]) -> _Matcher:
    return _Matcher(rules)


def _rank(priority: str) -> int:
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)


def classify(subject: str, text: str, rules: tuple[Rule, ...] = DEFAULT_RULES) -> Classification:
    """The first matching rule in priority order wins; "other"/"normal" otherwise.

    A keyword's words must follow each other in the text (spaces and
    punctuation between them do not matter); its first word must start a word.
    """
    matcher = _matcher(tuple(rules))
    words = _words(_normalise(subject) + "\n" + _normalise(text))
    # Look each distinct word up once; most mails repeat most of their words.
    hits = {word: found for word in set(words) if (found := matcher.candidates(word))}
    best: _Keyword | None = None
    for position in [i for i, word in enumerate(words) if word in hits] if hits else ():
        for keyword in hits[words[position]]:
            if (best is None or keyword.rank < best.rank) and _follows(words, position, keyword):
                best = keyword
    if best is None:
        return Classification(FALLBACK_CATEGORY, "normal", None)
    return Classification(best.rule.category, best.rule.priority, best.text)


def _words(text: str) -> list[str]:
    """Words without surrounding punctuation. str.split and str.strip run in C;
    a word regex over Unicode text is several times slower."""
    tokens = text.replace("-", " ").replace("/", " ").split()
    cleaned = {token: token.strip(_PUNCTUATION) for token in set(tokens)}
    return [word for word in map(cleaned.__getitem__, tokens) if word]


def _follows(words: list[str], position: int, keyword: _Keyword) -> bool:
    """The keyword's other words match the text's next words (the first already did)."""
    if position + len(keyword.words) > len(words):
        return False
    for offset in range(1, len(keyword.words)):
        stem, is_prefix = keyword.words[offset]
        if not _word_matches(words[position + offset], stem, is_prefix):
            return False
    return True
