"""Our RFC 2047 encoding and folding, against the stdlib folder it replaces on 3.11.7."""

from __future__ import annotations

import email
import random
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.policy import SMTP

from responders.encoding import MAX_LINE, encode_phrase, encode_text, encoded_words, fold
from responders.headers import set_text_header

WORDS = ("Ваше обращение принято Не пришёл вывод средств на карту уже третий день подряд, "
         "помогите пожалуйста [#10234] Re: 😀 ok").split()


def _subjects(count: int) -> list[str]:
    rng = random.Random(1)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))) for _ in range(count)]


def _header_block(msg: EmailMessage) -> str:
    return msg.as_bytes(policy=SMTP).decode("ascii").split("\r\n\r\n", 1)[0]


def test_encoded_words_are_short_and_never_split_a_character() -> None:
    text = "ё😀" * 40
    words = encoded_words(text)
    assert all(len(word) <= 75 for word in words)
    assert str(make_header(decode_header(" ".join(words)))) == text


def test_plain_words_stay_readable() -> None:
    assert encode_text("Refund  request\t[#10234]") == "Refund request [#10234]"
    mixed = encode_text("Re: Вывод [#10234]")
    assert mixed.startswith("Re: =?utf-8?b?") and mixed.endswith("?= [#10234]")
    assert "=?x?q?y?=" not in encode_text("=?x?q?y?=")  # would be decoded by the receiver


def test_a_plain_word_longer_than_a_line_allows_is_encoded() -> None:
    assert encode_text(f"Refund {'x' * 70} now") == f"Refund {'x' * 70} now"
    encoded = encode_text(f"Refund {'x' * 71} now")
    assert encoded.startswith("Refund =?utf-8?b?") and encoded.endswith("?= now")
    assert str(make_header(decode_header(encoded))) == f"Refund {'x' * 71} now"


def test_subjects_survive_compliant_readers_and_the_stdlib_parser() -> None:
    for subject in _subjects(300):
        msg = EmailMessage(policy=SMTP)
        set_text_header(msg, "Subject", subject, max_len=1000)
        block = _header_block(msg)
        assert all(len(line) <= MAX_LINE for line in block.split("\r\n")), block
        value = block.split(":", 1)[1].replace("\r\n", "").strip()
        assert str(make_header(decode_header(value))) == subject  # RFC 2047 §6.2 reading
        parsed = email.message_from_bytes(block.encode() + b"\r\n\r\n", policy=SMTP)
        assert str(parsed["Subject"]) == subject


def test_phrases() -> None:
    assert encode_phrase("John Smith") == "John Smith"
    assert encode_phrase("John Q. Public") == '"John Q. Public"'
    assert encode_phrase('Say "hi" \\o/') == '"Say \\"hi\\" \\\\o/"'
    assert encode_phrase("Иван").startswith("=?utf-8?b?")


def test_fold_cuts_only_between_tokens() -> None:
    value = " ".join(f"<id{n}@mail.example>" for n in range(20))
    folded = fold("References", value)
    lines = ("References: " + folded).split("\r\n")
    assert all(len(line) <= MAX_LINE for line in lines)
    assert all(line.startswith(" ") for line in lines[1:])
    assert folded.replace("\r\n", "") == value
