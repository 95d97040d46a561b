"""Decoding the text that players' mail clients really send."""

import pytest

from parsers.charset import (
    codec_for,
    decode_bytes,
    decode_header_value,
    decode_param,
    decode_raw_header,
)

RUSSIAN = "Здравствуйте, прошу вернуть мой депозит. Ещё вопрос: где выплата?"
GERMAN = "Grüße aus München, die Auszahlung fehlt noch."


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("UTF-8", "utf-8"),
        ("uft-8", "utf-8"),
        ("unicode-1-1-utf-7", "utf-7"),
        ('"windows-1251"', "cp1251"),
        ("KOI8-R", "koi8-r"),
        ("iso-8859-1", "cp1252"),
        ("ks_c_5601-1987", "cp949"),
        ("utf-8*ru", "utf-8"),
    ],
)
def test_codec_for_maps_real_world_labels(label, codec):
    assert codec_for(label) == codec


@pytest.mark.parametrize(
    "label", [None, "", "unknown-8bit", "x-no-such-charset", "base64", "rot13"]
)
def test_codec_for_refuses_labels_that_name_no_charset(label):
    assert codec_for(label) is None


@pytest.mark.parametrize(
    "label", ["windows-1251", "cp1251", None, "us-ascii", "iso-8859-1", "bogus"]
)
def test_cp1251_bytes_decode_whatever_the_label(label):
    assert decode_bytes(RUSSIAN.encode("cp1251"), label) == RUSSIAN


@pytest.mark.parametrize("label", ["koi8-r", None, "us-ascii", "latin1", "x-unknown"])
def test_koi8r_bytes_decode_whatever_the_label(label):
    assert decode_bytes(RUSSIAN.encode("koi8-r"), label) == RUSSIAN


def test_koi8r_mislabelled_as_windows_1251_is_recognised():
    assert decode_bytes(RUSSIAN.encode("koi8-r"), "windows-1251") == RUSSIAN


def test_valid_utf8_wins_over_a_latin1_label():
    assert decode_bytes(RUSSIAN.encode("utf-8"), "iso-8859-1") == RUSSIAN


def test_accented_latin_stays_latin():
    assert decode_bytes(GERMAN.encode("latin-1"), None) == GERMAN
    assert decode_bytes(GERMAN.encode("latin-1"), "iso-8859-1") == GERMAN


def test_utf7_under_its_exchange_alias():
    assert decode_bytes("Привет, мир".encode("utf-7"), "unicode-1-1-utf-7") == "Привет, мир"


def test_declared_multibyte_charset_is_used():
    assert decode_bytes("整体提升".encode("gb2312"), "gb2312") == "整体提升"


def test_shift_jis_labelled_iso_2022_jp_falls_back_to_its_family():
    assert decode_bytes("ツール".encode("cp932"), "iso-2022-jp") == "ツール"


def test_hints_decode_unlabelled_bytes_in_the_mails_charset():
    assert (
        decode_bytes("整体提升".encode("gb2312"), None, hints=("iso-8859-1", "gb2312"))
        == "整体提升"
    )


def test_undecodable_bytes_become_replacement_characters_not_errors():
    text = decode_bytes(b"\x81\x8d\x8f ok", "utf-8")
    assert text.endswith(" ok")
    assert isinstance(text, str)


def test_rfc2047_words_of_different_charsets_and_encodings():
    value = "=?windows-1251?B?yOLg7SA=?= =?koi8-r?Q?=F0=C5=D4=D2=CF=D7?= <ivan@example.ru>"
    assert decode_header_value(value) == "Иван Петров <ivan@example.ru>"


def test_rfc2047_character_split_across_two_words_is_joined():
    data = "Выплата".encode()
    first, second = data[:3], data[3:]  # the cut falls inside "ы"
    import base64

    value = " ".join(f"=?utf-8?B?{base64.b64encode(chunk).decode()}?=" for chunk in (first, second))
    assert decode_header_value(value) == "Выплата"


def test_rfc2047_keeps_text_between_words_and_drops_space_between_words():
    value = "Re: =?utf-8?Q?=D0=B2=D1=8B?=  =?utf-8?Q?=D0=B2=D0=BE=D0=B4?= now"
    assert decode_header_value(value) == "Re: вывод now"


def test_rfc2047_with_unknown_charset_still_gives_text():
    assert decode_header_value("=?x-nonsense?Q?abc?=") == "abc"


def test_raw_8bit_header_utf8_and_cp1251():
    raw_utf8 = "Вывод средств".encode().decode("ascii", "surrogateescape")
    raw_cp1251 = "Вывод средств".encode("cp1251").decode("ascii", "surrogateescape")
    assert decode_raw_header(raw_utf8) == "Вывод средств"
    assert decode_raw_header(raw_cp1251) == "Вывод средств"


def test_rfc2231_parameter_tuple_is_decoded_with_its_charset():
    text = "Чек.pdf".encode("cp1251").decode("latin-1")
    assert decode_param(("windows-1251", "", text)) == "Чек.pdf"


def test_rfc2047_inside_a_quoted_parameter_is_decoded():
    assert decode_param("=?utf-8?B?0KfQtdC6LnBkZg==?=") == "Чек.pdf"
