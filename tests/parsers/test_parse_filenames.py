"""Attachment names that are safe to store and to offer for download."""

import unicodedata

import pytest

from parsers.filenames import MAX_CHARS, extension_for, safe_filename


@pytest.mark.parametrize(
    ("hostile", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\evil.dll", "evil.dll"),
        ("C:\\x\\evil.exe", "evil.exe"),
        ("C:evil.exe", "evil.exe"),
        ("/absolute/path/report.pdf", "report.pdf"),
        ("re\x00port\x07.pdf", "report.pdf"),
        ("...hidden", "hidden"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("  spaced name.txt  ", "spaced name.txt"),
        ("double..dot.pdf", "double.dot.pdf"),
    ],
)
def test_hostile_names_are_reduced_to_a_plain_basename(hostile, expected):
    assert safe_filename(hostile, "application/octet-stream", 1) == expected


@pytest.mark.parametrize("empty", [None, "", "   ", "..", "../", "\x00\x01", "C:\\", "/"])
def test_empty_names_get_a_generated_one_from_the_content_type(empty):
    assert safe_filename(empty, "image/png", 3) == "attachment-3.png"


def test_generated_names_use_a_fixed_extension_table():
    assert safe_filename(None, "application/pdf", 1) == "attachment-1.pdf"
    assert safe_filename(None, "message/rfc822", 2) == "attachment-2.eml"
    assert safe_filename(None, "message/delivery-status", 3) == "attachment-3.txt"
    assert safe_filename(None, "application/x-unheard-of", 4) == "attachment-4.bin"
    assert extension_for("IMAGE/JPEG") == ".jpg"


def test_long_names_are_cut_to_150_characters_keeping_the_extension():
    name = safe_filename("a" * 500 + ".pdf", "application/pdf", 1)
    assert len(name) == MAX_CHARS
    assert name.endswith(".pdf")


def test_long_cyrillic_names_also_fit_a_filesystem_name():
    name = safe_filename("Квитанция" * 50 + ".pdf", "application/pdf", 1)
    assert name.endswith(".pdf")
    assert len(name) <= MAX_CHARS
    assert len(name.encode("utf-8")) <= 255


def test_long_name_without_extension_is_cut_too():
    assert safe_filename("x" * 500, "application/octet-stream", 1) == "x" * MAX_CHARS


def test_names_are_nfc_normalised():
    decomposed = unicodedata.normalize("NFD", "Ёлка.png")
    assert safe_filename(decomposed, "image/png", 1) == unicodedata.normalize("NFC", "Ёлка.png")


def test_ordinary_names_are_left_alone():
    assert safe_filename("Скриншот платежа.png", "image/png", 1) == "Скриншот платежа.png"
