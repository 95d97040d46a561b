"""RFC 2047 encoded words and RFC 5322 folding, written out here rather than by the stdlib.

Python 3.11.7's header folder is not trusted with our headers:

* it splits a long non-ASCII value so that a space of the text falls *between* two
  encoded words, where RFC 2047 §6.2 tells readers to drop it (one long Russian
  subject in ten lost a space in a trial: "помогитекарту");
* it turns a Message-ID longer than a line into an encoded word, breaking threading;
* a display name stored as an already formatted string is parsed again and may come
  out with its "<x@y>" unencoded, i.e. as a second recipient.

Here every encoded word carries its own spaces, so adjacent words join correctly,
and lines are cut only at spaces between tokens, which unfolding restores.
"""

from __future__ import annotations

import base64
import re

MAX_LINE = 78  # RFC 5322 §2.1.1; a longer line makes the stdlib refold the header itself
_WORD_BYTES = 42  # "=?utf-8?b?" + 56 base64 + "?=" = 68: within RFC 2047's 75, and
# "Subject: " plus one word still fits the first line
_PLAIN_MAX = 70  # a longer ASCII word is encoded, so that every token fits on a line
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")


def encoded_words(text: str) -> list[str]:
    """``text`` as UTF-8 "B" encoded words, cut between characters, never inside one.

    Cut in the encoded bytes: a cut that would fall on a UTF-8 continuation byte
    (10xxxxxx) moves back to the start of its character.
    """
    data = text.encode("utf-8")
    words: list[str] = []
    start, end = 0, len(data)
    while start < end:
        cut = min(start + _WORD_BYTES, end)
        while cut < end and data[cut] & 0xC0 == 0x80:
            cut -= 1
        words.append(_b_word(data[start:cut]))
        start = cut
    return words


def _b_word(data: bytes) -> str:
    return "=?utf-8?b?" + base64.b64encode(data).decode("ascii") + "?="


def _is_plain(word: str) -> bool:
    # "=?" would be read as the start of an encoded word by the receiver.
    return word.isascii() and word.isprintable() and "=?" not in word and len(word) <= _PLAIN_MAX


def encode_text(text: str) -> str:
    """Unstructured text (a subject) as one line of ASCII tokens; whitespace is normalised.

    Plain ASCII words stay readable; each run of other words becomes encoded words
    that hold the run's inner spaces, so no reader can lose or add one.
    """
    words = text.split()
    # Most subjects are plain ASCII words: every word stays as it is (what the loop below
    # gives for them), decided for the whole text at once.
    if text.isascii() and text.isprintable() and "=?" not in text \
            and max(map(len, words), default=0) <= _PLAIN_MAX:
        return " ".join(words)
    tokens: list[str] = []
    run: list[str] = []
    for word in words:
        if _is_plain(word):
            tokens.extend(encoded_words(" ".join(run)))
            run.clear()
            tokens.append(word)
        else:
            run.append(word)
    tokens.extend(encoded_words(" ".join(run)))
    return " ".join(tokens)


def encode_phrase(name: str) -> str:
    """A display name as an RFC 5322 phrase: atoms, a quoted string, or encoded words."""
    name = " ".join(name.split())
    if not name:
        return ""
    if not (name.isascii() and name.isprintable()) or "=?" in name:
        return " ".join(encoded_words(name))  # hides every special: "," "<" "@" '"'
    if _ATOMS.fullmatch(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fold(name: str, value: str) -> str:
    """``value`` cut at its spaces into lines of at most MAX_LINE with the header name.

    Returns what follows "Name: ", continuation lines joined by CRLF and a space.
    A token is never cut, so a token longer than a line gives a longer line.
    """
    budget = MAX_LINE - len(name) - 2
    lines = [""]
    for token in value.split(" "):
        line = lines[-1]
        joined = f"{line} {token}" if line else token
        if len(joined) <= budget or (not line and len(lines) > 1):
            lines[-1] = joined
        else:
            lines.append(token)
            budget = MAX_LINE - 1
    return "\r\n ".join(lines)
