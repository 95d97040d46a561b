"""Russian complaints and charset cases from tests/fixtures/mail, built by make_fixtures.py."""

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import pytest

from parsers import Address, classify, detect_language, parse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mail"


def _builder():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _builder()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize("name", sorted(BUILD.FIXTURES))
def test_fixture_files_match_their_builder(name):
    assert fixture(name) == BUILD.FIXTURES[name](), "run tests/fixtures/mail/make_fixtures.py"


@pytest.mark.parametrize("name", ["ru_complaint_cp1251_8bit.eml", "ru_complaint_cp1251_qp.eml"])
def test_russian_complaint_in_windows_1251(name):
    mail = parse(fixture(name))
    assert mail.subject == BUILD.COMPLAINT_SUBJECT
    assert mail.sender == Address("ivan.petrov@example.ru", BUILD.SENDER_NAME)
    assert mail.text.strip() == BUILD.COMPLAINT_TEXT.strip()
    assert mail.date == datetime(2025, 11, 3, 9, 30, tzinfo=UTC)
    assert mail.in_reply_to == ("ticket-17@support.example.com",)
    assert mail.references == ("welcome-1@support.example.com", "ticket-17@support.example.com")
    assert classify(mail.subject, mail.text).category == "refund"
    assert detect_language(mail.subject, mail.text) == "ru"


@pytest.mark.parametrize("name", ["ru_complaint_cp1251_8bit.eml", "ru_complaint_cp1251_qp.eml"])
def test_russian_complaint_attachments_are_byte_exact(name):
    screenshot, receipt = parse(fixture(name)).attachments
    assert (screenshot.filename, screenshot.content_type) == (BUILD.SCREENSHOT_NAME, "image/png")
    assert screenshot.payload == BUILD.png_bytes()
    # The receipt's name is RFC 2231 (in the second mail split into continuations).
    assert (receipt.filename, receipt.content_type) == (BUILD.RECEIPT_NAME, "application/pdf")
    assert receipt.payload == BUILD.pdf_bytes()


def test_koi8r_mail():
    mail = parse(fixture("ru_koi8r_plain.eml"))
    assert mail.subject == "Ставка рассчитана неверно"
    assert mail.sender == Address("petr@example.net", "Пётр")
    assert mail.text == BUILD.KOI8_TEXT
    assert classify(mail.subject, mail.text).category == "bet_settlement"


def test_utf7_mail_under_the_exchange_label():
    mail = parse(fixture("utf7_plain.eml"))
    assert mail.subject == BUILD.UTF7_TEXT
    assert mail.text.strip() == BUILD.UTF7_TEXT


def test_mislabelled_parts_are_read_as_what_they_are():
    text = parse(fixture("mislabelled_parts.eml")).text
    assert text == BUILD.MISLABELLED_CP1251 + BUILD.MISLABELLED_UTF8 + "и ещё строка"


def test_raw_8bit_headers():
    mail = parse(fixture("raw_8bit_headers.eml"))
    assert mail.subject == BUILD.RAW_SUBJECT
    assert mail.sender == Address("sergey@example.ru", BUILD.RAW_NAME)
    assert mail.header("from") == f"{BUILD.RAW_NAME} <sergey@example.ru>"
