"""Numbers in words for the mail we write: durations and sizes, in Russian and English.

Russian nouns after a number take one of three forms (1 час, 2 часа, 5 часов,
21 час, 11 часов), and the form also depends on the grammatical case the sentence
needs ("срок: 1 минута", "через 1 минуту", "в течение 1 минуты"). Any language
other than Russian gets English.
"""

from __future__ import annotations

import math
from datetime import timedelta

__all__ = ["human_size", "localized_duration", "ru_plural"]

# unit -> case -> (one, few, many)
_RU_UNITS: dict[str, dict[str, tuple[str, str, str]]] = {
    "day": {
        "nominative": ("день", "дня", "дней"),
        "accusative": ("день", "дня", "дней"),
        "genitive": ("дня", "дней", "дней"),
    },
    "hour": {
        "nominative": ("час", "часа", "часов"),
        "accusative": ("час", "часа", "часов"),
        "genitive": ("часа", "часов", "часов"),
    },
    "minute": {
        "nominative": ("минута", "минуты", "минут"),
        "accusative": ("минуту", "минуты", "минут"),
        "genitive": ("минуты", "минут", "минут"),
    },
}


def ru_plural(number: int, one: str, few: str, many: str) -> str:
    """The form of a Russian noun after ``number``: 1 час, 2 часа, 5 часов, 21 час."""
    tens, units = number % 100, number % 10
    if units == 1 and tens != 11:
        return one
    if 2 <= units <= 4 and not 12 <= tens <= 14:
        return few
    return many


def _parts(delta: timedelta) -> list[tuple[int, str]]:
    """Days only for whole days from two on ("24 часа" reads better than "1 день")."""
    minutes = max(math.ceil(delta.total_seconds() / 60), 0)  # never promise sooner
    hours, minutes = divmod(minutes, 60)
    if hours >= 48 and hours % 24 == 0 and not minutes:
        return [(hours // 24, "day")]
    parts = [(hours, "hour")] if hours else []
    return parts + [(minutes, "minute")] if minutes or not hours else parts


def localized_duration(delta: timedelta, language: str, *, case: str = "nominative") -> str:
    """"24 часа", "1 час 30 минут", "3 дня" / "24 hours", "1 hour 30 minutes", "3 days".

    ``case`` (Russian only): "nominative", "accusative" (after "через") or "genitive"
    (after "в течение"). Time is rounded up to whole minutes.
    """
    words = []
    for number, unit in _parts(delta):
        if language.lower().startswith("ru"):
            noun = ru_plural(number, *_RU_UNITS[unit][case])
        else:
            noun = unit if number == 1 else unit + "s"
        words.append(f"{number} {noun}")
    return " ".join(words)


def human_size(size: int, language: str) -> str:
    """"532 байта", "1,5 МБ" / "532 bytes", "1.5 MB" (powers of 1024, as mail clients show)."""
    russian = language.lower().startswith("ru")
    if size < 1024:
        if russian:
            return f"{size} {ru_plural(size, 'байт', 'байта', 'байт')}"
        return f"{size} {'byte' if size == 1 else 'bytes'}"
    units = ("КБ", "МБ", "ГБ") if russian else ("KB", "MB", "GB")
    value = size / 1024
    for unit in units:
        if value < 1024 or unit == units[-1]:
            break
        value /= 1024
    text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
    return f"{text.replace('.', ',') if russian else text} {unit}"
