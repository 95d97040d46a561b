"""Language identification on player mails: which library, measured on our own kind of text.

The sample (bench/data/language_sample.tsv) is written by hand: about twenty short
phone-style complaints per desk language (refunds, bets, account closure, self-exclusion),
some with English words mixed in, and Russian typed in Latin letters. Every candidate is
asked for one of the desk's languages where it allows that (restricted), else its answer
is taken as it is. Each candidate runs in a fresh child process so that its memory is its
own: RSS is measured after the model is loaded and every mail classified, minus the RSS of
the bare interpreter with the sample read.

Usage: python bench/language.py [--only NAME] [--sample bench|held-out|fresh]
  (candidates not installed print as such; the libraries compared are in the `bench` extra
  of pyproject.toml; the held-out and fresh samples are the ones tests/parsers/test_language.py
  reads)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SAMPLE = Path(__file__).resolve().parent / "data" / "language_sample.tsv"
# Written apart and never used to tune parsers/language.py: `--sample held-out`.
HELD_OUT = Path(__file__).resolve().parents[1] / "tests/parsers/data/language_heldout.tsv"
# Written before the second revision of the rules and not read mail by mail while making it
# (the first held-out sample was): `--sample fresh`.
FRESH = Path(__file__).resolve().parents[1] / "tests/parsers/data/language_fresh.tsv"
SAMPLES = {"bench": SAMPLE, "held-out": HELD_OUT, "fresh": FRESH}
DESK = ("en", "ru", "uk", "kk", "uz", "az", "tr", "de", "es", "pt")
SHORT = 40


def sample(path: Path = SAMPLE) -> list[tuple[str, str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            language, kind, text = line.split("\t", 2)
            rows.append((language, kind, text))
    return rows


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _ticketd() -> Callable[[str], str | None]:
    from parsers.language import _model, detect
    _model()  # loaded before the clock starts, as for the others
    return detect


def _cyrillic_or_not() -> Callable[[str], str | None]:
    """What ticketd did before: Russian when most letters are Cyrillic, else English."""
    def detect(text: str) -> str:
        letters = [c for c in text if c.isalpha()]
        cyrillic = sum("\u0400" <= c <= "\u04ff" for c in letters)
        return "ru" if letters and cyrillic * 2 > len(letters) else "en"
    return detect


def _fasttext_raw() -> Callable[[str], str | None]:
    from parsers.language import _clean, _model
    model = _model()

    def detect(text: str) -> str | None:
        labels, _ = model.predict(_clean(text).lower(), k=1)
        return labels[0].removeprefix("__label__") if labels else None
    return detect


def _fasttext_desk() -> Callable[[str], str | None]:
    """lid.176 asked for the best of the desk's languages, without our letters and words."""
    from parsers.language import _clean, _model
    model = _model()

    def detect(text: str) -> str | None:
        labels, _ = model.predict(_clean(text).lower(), k=-1, threshold=0.0)
        codes = (label.removeprefix("__label__") for label in labels)
        return next((code for code in codes if code in DESK), None)
    return detect


def _lingua(high: bool) -> Callable[[str], str | None]:
    from lingua import IsoCode639_1, LanguageDetectorBuilder
    codes = [getattr(IsoCode639_1, c.upper()) for c in DESK if hasattr(IsoCode639_1, c.upper())]
    builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)  # it has no Uzbek
    if not high:
        builder = builder.with_low_accuracy_mode()
    detector = builder.with_preloaded_language_models().build()

    def detect(text: str) -> str | None:
        found = detector.detect_language_of(text)
        return found.iso_code_639_1.name.lower() if found else None
    return detect


def _langdetect() -> Callable[[str], str | None]:
    from langdetect import DetectorFactory, LangDetectException
    from langdetect import detect as guess
    DetectorFactory.seed = 0  # it is random otherwise

    def detect(text: str) -> str | None:
        try:
            return guess(text).split("-")[0]
        except LangDetectException:
            return None
    return detect


def _langid() -> Callable[[str], str | None]:
    from langid.langid import LanguageIdentifier, model
    identifier = LanguageIdentifier.from_modelstring(model)
    known = set(identifier.nb_classes)
    identifier.set_languages([c for c in DESK if c in known])
    return lambda text: identifier.classify(text)[0]


CANDIDATES: dict[str, tuple[str, Callable[[], Callable[[str], str | None]]]] = {
    "ticketd": ("parsers/language.py: lid.176.ftz, desk languages, letters, words", _ticketd),
    "fasttext-desk": ("fastText lid.176.ftz, best desk language, no letter rules", _fasttext_desk),
    "fasttext": ("fastText lid.176.ftz, top answer of 176 languages", _fasttext_raw),
    "lingua-low": ("lingua-language-detector, desk languages, low accuracy",
                   lambda: _lingua(False)),
    "lingua-high": ("lingua-language-detector, desk languages, high accuracy",
                    lambda: _lingua(True)),
    "langid": ("langid.py, desk languages it knows", _langid),
    "langdetect": ("langdetect (55 languages, not restricted)", _langdetect),
    "cyrillic": ("before: Cyrillic or not", _cyrillic_or_not),
}


def child(name: str, path: Path) -> dict:
    rows = sample(path)
    base = _rss_kb()
    try:
        detect = CANDIDATES[name][1]()
    except ImportError as err:
        return {"name": name, "error": f"not installed ({err.name})"}
    answers = []
    start = time.perf_counter()
    for _, _, text in rows:
        answers.append(detect(text))
    elapsed = time.perf_counter() - start
    return {"name": name, "answers": answers, "rss_mb": (_rss_kb() - base) / 1024,
            "us_per_mail": elapsed / len(rows) * 1e6}


def _kinds(language: str, kind: str, text: str) -> list[str]:
    found = [language]
    found.append("short" if len(text) <= SHORT else "long")
    if kind != "plain":
        found.append(kind)
    return found


def table(results: list[dict], path: Path) -> str:
    rows = sample(path)
    columns = [*DESK, "short", "long", "mixed", "translit", "all"]
    head = ["candidate", *columns, "RSS MB", "µs/mail"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for result in results:
        if "error" in result:
            lines.append(f"| {result['name']} | {result['error']} |")
            continue
        right: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for (language, kind, text), answer in zip(rows, result["answers"], strict=True):
            for group in [*_kinds(language, kind, text), "all"]:
                right[group][0] += answer == language
                right[group][1] += 1
        cells = [f"{100 * right[c][0] / right[c][1]:.0f}" if right[c][1] else "-" for c in columns]
        lines.append(f"| {result['name']} | " + " | ".join(cells)
                     + f" | {result['rss_mb']:.0f} | {result['us_per_mail']:.0f} |")
    counts = defaultdict(int)
    for language, kind, text in rows:
        for group in [*_kinds(language, kind, text), "all"]:
            counts[group] += 1
    lines.append("| mails | " + " | ".join(str(counts[c]) for c in columns) + " | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--only")
    parser.add_argument("--sample", choices=tuple(SAMPLES), default="bench")
    args = parser.parse_args()
    path = SAMPLES[args.sample]
    if args.child:
        print(json.dumps(child(args.child, path)))
        return
    results = []
    for name in [args.only] if args.only else CANDIDATES:
        print(f"{name} ...", file=sys.stderr)
        out = subprocess.run([sys.executable, __file__, "--child", name, "--sample", args.sample],
                             capture_output=True, text=True)
        if out.returncode:
            results.append({"name": name, "error": f"failed: {out.stderr.strip()[-200:]}"})
        else:
            results.append(json.loads(out.stdout))
    print(f"sample: {path.relative_to(Path(__file__).resolve().parents[1])}")
    print(table(results, path))
    print()
    for name, (what, _) in CANDIDATES.items():
        print(f"- {name}: {what}")


if __name__ == "__main__":
    main()
