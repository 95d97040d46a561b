"""Turning the bytes and header words that senders really produce into text.

Mail in the wild carries wrong, misspelt and missing charset labels, raw
8-bit headers and encoded words split in the middle of a character. Every
function here returns text and never raises: a replacement character is the
last resort, not an exception.
"""

from __future__ import annotations

import binascii
import codecs
import re
from functools import lru_cache

# Labels seen in real mail that Python does not know, or knows under a name
# that decodes less than the sender's software actually wrote.
_ALIASES = {
    "unicode-1-1-utf-7": "utf-7",
    "x-unicode-1-1-utf-7": "utf-7",
    "uft-8": "utf-8",
    "utf8": "utf-8",
    "x-utf-8": "utf-8",
    # WHATWG: these labels mean windows-1252 on the web and in mail clients.
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "ascii",
    "ansi_x3.4-1968": "ascii",
    # Supersets: what the sender's mailer wrote is usually the Windows code page.
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "x-mac-cyrillic": "mac-cyrillic",
}
# Labels that name no charset at all.
_NO_CHARSET = {"", "unknown", "unknown-8bit", "x-unknown", "default", "charset", "none"}
# Codecs whose output is plain ASCII bytes: pure-ASCII input still needs them.
_SEVEN_BIT = {"utf-7", "hz", "iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2", "iso2022_kr"}
# Single-byte labels under which real Cyrillic often hides (mislabelled parts).
_LATIN_LABELS = {"ascii", "cp1252", "iso8859-15", "latin_1", "iso8859-1"}
_CYRILLIC_CODECS = ("cp1251", "koi8-r")
_UNCONFIRMING = _LATIN_LABELS | set(_CYRILLIC_CODECS)
# A label names the language more reliably than the exact code page: Japanese
# mailers label Shift_JIS bytes as ISO-2022-JP, Chinese ones GBK as Big5.
_FAMILIES = {
    "iso2022_jp_ext": ("cp932", "euc_jp"),
    "iso2022_jp": ("cp932", "euc_jp"),
    "iso2022_jp_2": ("cp932", "euc_jp"),
    "cp932": ("euc_jp",),
    "euc_jp": ("cp932",),
    "gb18030": ("big5hkscs",),
    "big5": ("big5hkscs", "gb18030"),
    "cp949": ("iso2022_kr",),
}
# Most frequent Russian lower-case letters (about 60% of running text).
_FREQUENT_RU = "оеаинтсрвлкмдп"
_HIGH_LETTER_BYTES = bytes(range(0xC0, 0x100))
_EIGHT_BIT_WORD = re.compile(rb"[A-Za-z\x80-\xff]*[\x80-\xff][A-Za-z\x80-\xff]*")

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@lru_cache(maxsize=256)
def codec_for(label: str | None) -> str | None:
    """Python codec name for a MIME charset label, or None when unusable."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower().split("*", 1)[0]  # RFC 2231 "utf-8*en"
    if name in _NO_CHARSET:
        return None
    name = _ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError: a NUL inside the label
        return None
    # base64, zlib, rot13 and friends are codecs too, but not charsets.
    if not getattr(info, "_is_text_encoding", True) or info.name in ("undefined", "mbcs"):
        return None
    return info.name


def decode_bytes(data: bytes, label: str | None = None, hints: tuple[str, ...] = ()) -> str:
    """Decode a body or header's bytes, repairing wrong or missing labels.

    ``hints`` are the other charsets the same mail declares: raw 8-bit
    headers are usually in the charset of the sender's body text.
    """
    codec = codec_for(label)
    if data.isascii() and codec not in _SEVEN_BIT:
        return data.decode("ascii")
    if codec is None or codec in _LATIN_LABELS or codec in _CYRILLIC_CODECS or codec == "utf-8":
        # Valid non-ASCII UTF-8 is almost never an accident in 8-bit text.
        text = _strict(data, "utf-8")
        if text is not None:
            return text
    if codec in _CYRILLIC_CODECS:
        return _cyrillic(data, prefer=codec)
    for candidate in _candidates(codec, hints):
        text = _strict(data, candidate)
        if text is not None:
            return text
    # A mail that declares a Cyrillic charset anywhere is Russian in its raw bytes too.
    hinted = [h for h in map(codec_for, hints) if h in _CYRILLIC_CODECS]
    if hinted or _looks_cyrillic(data):
        return _cyrillic(data, prefer=hinted[0] if hinted else "cp1251")
    return data.decode(codec if codec in ("cp1252", "iso8859-15") else "cp1252", "replace")


def _candidates(codec: str | None, hints: tuple[str, ...]) -> list[str]:
    """The declared codec, its relatives, then the mail's other non-Latin charsets, then UTF-8."""
    found = [] if codec is None or codec in _LATIN_LABELS else [codec, *_FAMILIES.get(codec, ())]
    for hint in hints:
        hinted = codec_for(hint)
        # Latin and Cyrillic code pages accept any bytes: they cannot confirm a guess.
        for relative in (hinted, *_FAMILIES.get(hinted or "", ())):
            if relative and relative not in _UNCONFIRMING and relative not in found:
                found.append(relative)
    return [*found, "utf-8"]


def _strict(data: bytes, codec: str) -> str | None:
    try:
        text = data.decode(codec)
    except (UnicodeError, LookupError, ValueError):
        return None
    # utf-7 and a few CJK codecs can yield lone surrogates: not text.
    return None if _SURROGATE.search(text) else text


def _looks_cyrillic(data: bytes) -> bool:
    """In the words that carry 8-bit bytes, most letters are 8-bit: a non-Latin
    script ("Сергей"), not accented Latin ("Grüße")."""
    words = b"".join(_EIGHT_BIT_WORD.findall(data))
    high = len(words) - len(words.translate(None, _HIGH_LETTER_BYTES))
    return high > 0 and high * 2 > len(words)


def _cyrillic(data: bytes, prefer: str = "cp1251") -> str:
    """Pick windows-1251 or KOI8-R by how Russian the lower-case letters look.

    The two code pages swap upper and lower case, so the wrong guess turns
    running text into capitals that miss the frequent-letter set.
    """
    scored = []
    for codec in _CYRILLIC_CODECS:
        text = data.decode(codec, "replace")
        score = sum(text.count(letter) for letter in _FREQUENT_RU)  # C-speed counting
        scored.append((score, codec == prefer, text))
    other, preferred = sorted(scored, key=lambda s: s[1])
    # A declared label wins unless the other reading is clearly more Russian.
    if other[0] >= 8 and other[0] > 2 * preferred[0]:
        return other[2]
    return preferred[2]


def decode_raw_header(value: str, hints: tuple[str, ...] = ()) -> str:
    """Repair raw 8-bit bytes in a header that the email package kept as surrogates."""
    if not _SURROGATE.search(value):
        return value
    return decode_bytes(value.encode("utf-8", "surrogateescape"), None, hints)


def decode_header_value(value: str, hints: tuple[str, ...] = ()) -> str:
    """Fully decoded header text: raw 8-bit repaired, folds removed, RFC 2047 words decoded."""
    text = _FOLD.sub("", decode_raw_header(value, hints))
    if "=?" not in text:
        return text
    return "".join(_decode_chunk(chunk, hints) for chunk in _encoded_runs(text))


def _encoded_runs(text: str) -> list[str | list[tuple[str, bytes]]]:
    """Split into literal text and runs of adjacent encoded words.

    Whitespace between two encoded words is not content (RFC 2047 section 6.2),
    and a character split across words only decodes once their bytes are joined.
    """
    chunks: list[str | list[tuple[str, bytes]]] = []
    pos = 0
    for match in _ENCODED_WORD.finditer(text):
        between = text[pos : match.start()]
        previous = chunks[-1] if chunks else None
        if not (isinstance(previous, list) and not between.strip()):
            if between:
                chunks.append(between)
            previous = []
            chunks.append(previous)
        previous.append((match.group(1), _word_bytes(match.group(2), match.group(3))))
        pos = match.end()
    if pos < len(text):
        chunks.append(text[pos:])
    return chunks


def _word_bytes(encoding: str, payload: str) -> bytes:
    raw = payload.encode("ascii", "replace")
    try:
        if encoding in "bB":
            raw = raw.replace(b" ", b"")
            return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4))
        return binascii.a2b_qp(raw, header=True)
    except (binascii.Error, ValueError):
        return raw


def _decode_chunk(chunk: str | list[tuple[str, bytes]], hints: tuple[str, ...]) -> str:
    if isinstance(chunk, str):
        return chunk
    pieces: list[str] = []
    label, buffer = chunk[0][0], b""
    for word_label, data in chunk:
        if codec_for(word_label) != codec_for(label):
            pieces.append(decode_bytes(buffer, label, hints))
            label, buffer = word_label, b""
        buffer += data
    pieces.append(decode_bytes(buffer, label, hints))
    return "".join(pieces)


def decode_param(
    value: str | tuple[str | None, str | None, str] | None, hints: tuple[str, ...] = ()
) -> str | None:
    """Decode a MIME parameter as the email package returns it.

    RFC 2231 values arrive as (charset, language, text-of-latin-1-bytes);
    plain values may still carry RFC 2047 words or raw 8-bit bytes, which
    popular clients put into filenames regardless of the standard.
    """
    if value is None:
        return None
    if isinstance(value, tuple):
        label, _language, text = value
        try:
            data = text.encode("latin-1")
        except UnicodeEncodeError:  # already decoded text, e.g. a repaired 8-bit header
            return text
        return decode_bytes(data, label, hints)
    return decode_header_value(value, hints)
