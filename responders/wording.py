"""Numbers in words for the mail we write: durations and sizes, in each desk language.

Russian and Ukrainian nouns after a number take one of three forms (1 час, 2 часа,
5 часов, 21 час, 11 часов), and the form also depends on the grammatical case the
sentence needs ("срок: 1 минута", "через 1 минуту", "в течение 1 минуты"). Kazakh,
Uzbek, Azerbaijani and Turkish keep the singular after a number ("24 сағат", "24 saat");
German, Spanish and Portuguese have a singular and a plural. The templates put durations
where the nominative reads right. A language we do not know gets English.
"""

from __future__ import annotations

import math
from datetime import timedelta

__all__ = ["human_size", "localized_duration", "ru_plural"]

_UK_UNITS: dict[str, dict[str, tuple[str, str, str]]] = {
    "day": {
        "nominative": ("день", "дні", "днів"),
        "accusative": ("день", "дні", "днів"),
        "genitive": ("дня", "днів", "днів"),
    },
    "hour": {
        "nominative": ("година", "години", "годин"),
        "accusative": ("годину", "години", "годин"),
        "genitive": ("години", "годин", "годин"),
    },
    "minute": {
        "nominative": ("хвилина", "хвилини", "хвилин"),
        "accusative": ("хвилину", "хвилини", "хвилин"),
        "genitive": ("хвилини", "хвилин", "хвилин"),
    },
}
_SLAVIC = {"uk": _UK_UNITS}  # Russian's table is below

# unit -> (singular, plural): one word after any number for the Turkic languages
_UNITS: dict[str, dict[str, tuple[str, str]]] = {
    "en": {"day": ("day", "days"), "hour": ("hour", "hours"), "minute": ("minute", "minutes")},
    "kk": {"day": ("күн", "күн"), "hour": ("сағат", "сағат"), "minute": ("минут", "минут")},
    "uz": {"day": ("kun", "kun"), "hour": ("soat", "soat"), "minute": ("daqiqa", "daqiqa")},
    "az": {"day": ("gün", "gün"), "hour": ("saat", "saat"), "minute": ("dəqiqə", "dəqiqə")},
    "tr": {"day": ("gün", "gün"), "hour": ("saat", "saat"), "minute": ("dakika", "dakika")},
    "de": {"day": ("Tag", "Tage"), "hour": ("Stunde", "Stunden"),
           "minute": ("Minute", "Minuten")},
    "es": {"day": ("día", "días"), "hour": ("hora", "horas"), "minute": ("minuto", "minutos")},
    "pt": {"day": ("dia", "dias"), "hour": ("hora", "horas"), "minute": ("minuto", "minutos")},
}
# Bytes below a kilobyte (singular, plural; Slavic: one, few, many) and the larger units.
_BYTES: dict[str, tuple[str, ...]] = {
    "en": ("byte", "bytes"), "ru": ("байт", "байта", "байт"), "uk": ("байт", "байти", "байтів"),
    "kk": ("байт", "байт"), "uz": ("bayt", "bayt"), "az": ("bayt", "bayt"),
    "tr": ("bayt", "bayt"), "de": ("Byte", "Byte"), "es": ("byte", "bytes"),
    "pt": ("byte", "bytes"),
}
_CYRILLIC_UNITS = ("КБ", "МБ", "ГБ")
_LATIN_UNITS = ("KB", "MB", "GB")


def _primary(language: str) -> str:
    return language.lower().split("-")[0].split("_")[0]

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
    code = _primary(language)
    slavic = _SLAVIC.get(code, _RU_UNITS if code == "ru" else None)
    words = []
    for number, unit in _parts(delta):
        if slavic is not None:
            noun = ru_plural(number, *slavic[unit][case])
        else:
            one, many = _UNITS.get(code, _UNITS["en"])[unit]
            noun = one if number == 1 else many
        words.append(f"{number} {noun}")
    return " ".join(words)


def human_size(size: int, language: str) -> str:
    """"532 байта", "1,5 МБ" / "532 bytes", "1.5 MB" (powers of 1024, as mail clients show);
    a decimal comma in every language but English."""
    code = _primary(language)
    code = code if code in _BYTES else "en"
    if size < 1024:
        forms = _BYTES[code]
        noun = ru_plural(size, *forms) if len(forms) == 3 else forms[size != 1]
        return f"{size} {noun}"
    units = _CYRILLIC_UNITS if code in ("ru", "uk", "kk") else _LATIN_UNITS
    value = size / 1024
    for unit in units:
        if value < 1024 or unit == units[-1]:
            break
        value /= 1024
    text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
    return f"{text if code == 'en' else text.replace('.', ',')} {unit}"
