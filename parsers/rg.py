"""Responsible gambling on every message: does the player ask to be excluded, to have the
account closed, or say that gambling harms them?

The phrases are data (`rg_phrases.toml`, shipped with the package, reviewable on its own)
and are matched by the same keyword engine as the complaint categories, so a stem and a
phrase mean the same thing in both places. Only what the player wrote counts: the caller
passes the visible text of a reply (quotes of our own mail, which names these topics, are
cut), never the full text.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from parsers.classify import Rule, classify

__all__ = ["RG_CATEGORY", "RG_PRIORITY", "RgHit", "load_phrases", "responsible_gambling"]

RG_CATEGORY = "self_exclusion"
RG_PRIORITY = "urgent"
INTENTS = ("self_exclusion", "account_closure", "gambling_harm")


@dataclass(frozen=True)
class RgHit:
    intent: str  # self_exclusion | account_closure | gambling_harm
    phrase: str  # the phrase of rg_phrases.toml that matched


def load_phrases(text: str | None = None) -> tuple[Rule, ...]:
    """The phrases as classify() rules, one per intent (all languages together)."""
    data = tomllib.loads(text if text is not None else _packaged())
    rules = []
    for intent in INTENTS:
        by_language = data.get(intent, {})
        phrases = tuple(p for language in sorted(by_language) for p in by_language[language])
        rules.append(Rule(intent, RG_PRIORITY, phrases))
    return tuple(rules)


@lru_cache(maxsize=1)
def _packaged() -> str:
    return resources.files("parsers").joinpath("rg_phrases.toml").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _default_rules() -> tuple[Rule, ...]:
    return load_phrases()


def responsible_gambling(subject: str, text: str,
                         rules: tuple[Rule, ...] | None = None) -> RgHit | None:
    """The first intent found in the subject or the player's own text, else None."""
    found = classify(_fold(subject), _fold(text), rules or _default_rules())
    if found.keyword is None:
        return None
    return RgHit(found.category, found.keyword)


def _fold(text: str) -> str:
    # Turkish capital İ lower-cases to "i" plus a combining dot, which no phrase spells.
    return text.replace("İ", "i").replace("\u0307", "")
