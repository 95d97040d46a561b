"""visible_text: the player's new text, without our marker, quotes and client signatures.

Client shapes are realistic replies to our own mail under tests/fixtures/reply/
(Yandex, Mail.ru, Gmail, Outlook, iPhone, Apple Mail, Thunderbird; Russian and
English); the third-party corpora are checked in test_reply_corpus.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from parsers.html import html_to_text
from parsers.reply import REPLY_MARKERS, visible_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reply"

TEXT_REPLIES = {
    "yandex_web_ru.txt": "Добрый день!\nДеньги так и не пришли на карту, прошло уже 5 дней.",
    "yandex_web_ru_no_address.txt": "Пришли, спасибо большое!",
    "yandex_mobile_ru.txt": "Спасибо, всё получил.",
    "mailru_web_ru.txt": "Здравствуйте. Верификацию прошёл, документы отправил вчера.\n"
    "Номер заявки 4821.",
    "mailru_web_ru_unquoted_header.txt": "Деньги пришли, спасибо!",
    "mailru_mobile_ru.txt": "Когда будет выплата? Жду уже неделю",
    "gmail_ru.txt": "Спасибо, жду.",
    "gmail_ru_wrapped.txt": "Добрый вечер, пришлите, пожалуйста, номер транзакции ещё раз.",
    "gmail_ru_old.txt": "Да, это мой аккаунт.",
    "outlook_ru.txt": "Добрый день.\nПрикладываю скриншот ошибки при пополнении.\n\n"
    "С уважением,\nИван Петров",
    "outlook_ru_original_message.txt": "Ошибка повторяется и сегодня.",
    "iphone_ru.txt": "Здравствуйте, а когда будет ответ?",
    "iphone_ru_unquoted_header.txt": "Всё, разобрался, спасибо 👍",
    "thunderbird_ru.txt": "Добрый день, лимит на вывод можно увеличить?",
    "thunderbird_ru_forward.txt": "Пересылаю письмо из банка, платёж отклонён.",
    "outlook_en.txt": 'Hi,\n\nI still can\'t log in. The error says "account locked".\n\n'
    "Thanks,\nJohn",
    "outlook_en_original_message.txt": "Done, the documents are attached.",
    "outlook_ios_en.txt": "Yes, that was me.",
    "gmail_en.txt": "The deposit was made with my Visa card ending 1234.",
    "apple_mail_en.txt": "Thank you, received.",
    "iphone_en.txt": "Ok, will do tonight",
    "thunderbird_en.txt": "Hello,\n\nmy account is still blocked.\n\nRegards,\nJohn",
    "thunderbird_en_original_message.txt": "See below, this is the third time.",
    "inline_answers_en.txt": "Visa, the card ending 1234.\n\nYesterday around 18:00.",
}

HTML_REPLIES = {
    "gmail_ru.html": "Добрый день!\nНомер транзакции: 88-4821-Z.",
    "yandex_ru.html": "Здравствуйте!\nБонус так и не начислен.",
    "mailru_ru.html": "Документы отправил, проверьте пожалуйста.",
    "outlook_web_ru.html": "Добрый день, пополнение с карты снова не проходит.",
    "outlook_desktop_en.html": "Hello,\n\nI have sent the documents again.",
    "apple_mail_en.html": "Thanks, got it!",
    "thunderbird_en.html": "Hello,\n\nthe game froze during the bonus round.",
}


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_every_fixture_file_has_an_expectation() -> None:
    assert {p.name for p in FIXTURES.iterdir()} == set(TEXT_REPLIES) | set(HTML_REPLIES)


@pytest.mark.parametrize("name", sorted(TEXT_REPLIES))
def test_client_reply_is_the_players_text(name: str) -> None:
    assert visible_text(_fixture(name)) == TEXT_REPLIES[name]


@pytest.mark.parametrize("name", sorted(TEXT_REPLIES))
def test_client_reply_is_cut_by_its_quote_header_alone(name: str) -> None:
    """Without our marker (an old thread, a stripped marker) the client's header still cuts."""
    assert visible_text(_fixture(name), markers=()) == TEXT_REPLIES[name]


@pytest.mark.parametrize("name", sorted(HTML_REPLIES))
def test_html_reply_is_the_players_text(name: str) -> None:
    assert visible_text("", html=_fixture(name)) == HTML_REPLIES[name]


@pytest.mark.parametrize("name", sorted(HTML_REPLIES))
def test_html_reply_is_used_when_the_text_was_rendered_from_it(name: str) -> None:
    html = _fixture(name)
    assert visible_text(html_to_text(html), html=html) == HTML_REPLIES[name]


@pytest.mark.parametrize("name", sorted(HTML_REPLIES))
def test_html_reply_is_cut_by_its_quote_container_alone(name: str) -> None:
    assert visible_text("", html=_fixture(name), markers=()) == HTML_REPLIES[name]


def test_real_text_part_wins_over_the_html_part() -> None:
    text = "Plain answer\n\n> quoted"
    assert visible_text(text, html="<p>Something else entirely</p>") == "Plain answer"


# --- our marker -------------------------------------------------------------------


def test_marker_cuts_an_unquoted_original_without_any_header() -> None:
    text = "Thanks!\n\n##- Please type your reply above this line -##\n\nHello John,\nwe checked."
    assert visible_text(text) == "Thanks!"


def test_marker_cuts_when_quoted() -> None:
    text = "Ok\n\n> > ##- Please type your reply above this line -##\n> > Hello"
    assert visible_text(text, markers=REPLY_MARKERS) == "Ok"


def test_marker_rewrapped_by_the_client_cuts_where_it_starts() -> None:
    text = (
        "Жду ответа\n\n> ##- Пожалуйста, пишите ответ\n> выше этой\n> строки -##\n> Здравствуйте!\n"
    )
    assert visible_text(text) == "Жду ответа"


def test_marker_matches_despite_case_spacing_and_invisible_characters() -> None:
    text = "Fine\n\n\ufeff##-  PLEASE type your\u200b reply above this line -##\nHi"
    assert visible_text(text) == "Fine"


def test_marker_inside_a_quoted_block_cuts_the_rest_of_the_mail() -> None:
    text = (
        "My answer.\n\n> Your question?\n\nMore answer.\n\n"
        "> ##- Please type your reply above this line -##\n> Hello\n\nUnder the quote"
    )
    assert visible_text(text) == "My answer.\n\nMore answer."


@pytest.mark.parametrize("attribution", [
    "On Wed, Casino Support wrote:",  # the demo's agent reply: no date, no address
    "Casino Support wrote:",
    "On Wed, 12 Mar 2025 at 10:04, Casino Support <support@casino.example> wrote:",
    "On Wed, 12 Mar 2025 at 10:04, Casino Support\n<support@casino.example> wrote:",
    "On Wed, Casino Support\nwrote:",
    "Casino Support <support@casino.example>:",
    "Служба поддержки писал(а):",
    "Служба поддержки писала:",
    "12.03.2025, 10:04, \"Служба поддержки\" <support@casino.example>:",
])
def test_no_attribution_survives_above_a_quote_cut_at_the_marker(attribution: str) -> None:
    text = (f"We have resettled it and credited your account.\n\n{attribution}\n"
            "> ##- Please type your reply above this line -##\n> Ticket #10002\n")
    assert visible_text(text) == "We have resettled it and credited your account."


def test_the_player_sentence_above_an_attribution_is_kept() -> None:
    text = ("I already sent the screenshot.\nCasino Support wrote:\n"
            "> ##- Please type your reply above this line -##\n> Hello\n")
    assert visible_text(text) == "I already sent the screenshot."


def test_the_demo_agent_reply_reaches_the_player_without_a_dangling_attribution() -> None:
    """The demo's Anna replies to her notification from a mail client: the quoted
    notification starts with our marker, right under a short attribution line."""
    notification = ("##- Please type your reply above this line -##\n"
                    "Ticket #10002 (bet_settlement, normal) from sam@players.example\n\n"
                    "My bet was settled wrongly\n")
    quoted = "\n".join("> " + line for line in notification.splitlines())
    text = ("Hello Sam, we checked the result: the match ended 2:1, so your accumulator won. "
            "We have resettled it and credited your account.\n\n"
            f"On Wed, Casino Support wrote:\n{quoted}\n")
    visible = visible_text(text)
    assert visible.endswith("credited your account.")
    assert "wrote" not in visible


def test_markers_are_a_parameter() -> None:
    text = "Yes\n\n=== reply above ===\nOriginal"
    assert visible_text(text, markers=("=== reply above ===",)) == "Yes"
    assert visible_text(text, markers=()) == text


def test_text_written_only_below_the_marker_falls_back_to_the_whole_mail() -> None:
    text = "##- Please type your reply above this line -##\n\nAnswer written below\n"
    assert visible_text(text) == text.strip()


# --- quote headers --------------------------------------------------------------


def test_header_sharing_a_line_with_the_reply_keeps_the_reply() -> None:
    text = "Ok reply On Wed, Apr 4, 2012 at 3:59 PM, bob@example.com wrote:\n> Hi"
    assert visible_text(text) == "Ok reply"


def test_sender_wrote_line_without_quote_or_address_is_the_players_text() -> None:
    text = "Служба поддержки пишет:\nвывод невозможен. Почему?"
    assert visible_text(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "Я уже 3 раза вам написал:\nверните деньги на карту",
        "12.03.2024 я вам написал:\nверните деньги на карту",
        "On 12 May I wrote:\nplease close my account",
        "The 2 emails you sent:\nboth were empty",
    ],
)
def test_players_own_wrote_line_without_time_or_address_is_kept(text: str) -> None:
    assert visible_text(text) == text


def test_sentence_starting_with_a_date_is_not_a_wrapped_header() -> None:
    text = (
        "On 12 May 2025 I made a deposit.\nYour colleague wrote:\n> we see nothing\n\n"
        "Still waiting."
    )
    assert visible_text(text) == "On 12 May 2025 I made a deposit.\nStill waiting."


def test_date_line_ending_with_an_address_colon_is_not_a_header_without_brackets() -> None:
    text = "12.03.2024 I sent 100 EUR to pay@casino.example:\nreference 88-4821"
    assert visible_text(text) == text


def test_outlook_field_block_needs_a_second_field() -> None:
    text = "From: my bank account\nthe money never left."
    assert visible_text(text) == text


def test_russian_outlook_field_block_cuts() -> None:
    text = "Ок\n\nОт: Casino Support\nДата: 12.03.2024\nТема: Заявка\n\nТекст"
    assert visible_text(text, markers=()) == "Ок"


def test_windows_and_old_mac_line_endings() -> None:
    text = "Da\r\n\r\nOn 12/05/2025 14:05, Casino Support wrote:\r\n> Hello\r\n"
    assert visible_text(text) == "Da"
    assert visible_text(text.replace("\r\n", "\r")) == "Da"


# --- quoted blocks --------------------------------------------------------------


def test_quote_between_the_players_lines_goes_and_the_lines_stay() -> None:
    text = "> Which game?\nRoulette.\n> When?\nYesterday."
    assert visible_text(text) == "Roulette.\nYesterday."


def test_link_wrapped_out_of_a_quote_stays_in_the_quote() -> None:
    text = "Done\n\n> see (http://example.com/a\n_token=3dd518)\n> thanks\n"
    assert visible_text(text) == "Done"


# --- signatures -----------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        "-- \nИван Петров\n+7 900 000-00-00",
        "Sent from my iPhone",
        "Sent from my Samsung Galaxy smartphone.",
        "Sent from Mail for Windows",
        "Get Outlook for Android",
        "Получите Outlook для iOS<https://aka.ms/o0ukef>",
        "Отправлено с iPhone",
        "Отправлено с моего iPad",
        "Отправлено из мобильной Почты Mail.ru",
        "Отправлено из Яндекс.Почты",
        "Отправлено из мобильного приложения Яндекс Почты",
        "Отправлено с мобильного устройства",
        "--\nJohn",
    ],
)
def test_client_signature_is_stripped(signature: str) -> None:
    assert visible_text(f"Когда выплата?\n\n{signature}\n") == "Когда выплата?"


@pytest.mark.parametrize(
    "text",
    [
        "Here is another email\n\nSent from my desk, is much easier then my mobile phone.",
        "Перевёл деньги.\n\nОтправлено с карты *1234 в 14:05",
        "Part one\n--\n" + "\n".join(f"line {n}" for n in range(12)),
        "Sent from my iPhone\n\n" + "\n".join(f"line {n}" for n in range(5)),
        "Steps:\n-open the cashier\n-click withdraw",
        "Steps:\n\n-open the cashier\n\n-click withdraw",
    ],
)
def test_text_that_only_resembles_a_signature_stays(text: str) -> None:
    assert visible_text(text) == text


# --- fallback and edge cases ----------------------------------------------------


def test_everything_quoted_falls_back_to_the_whole_text() -> None:
    text = "> only a quote\n> nothing new\n"
    assert visible_text(text) == text.strip()


@pytest.mark.parametrize("text", ["", "   \n\n", "\r\n"])
def test_empty_mail_gives_empty_text(text: str) -> None:
    assert visible_text(text) == ""
    assert visible_text(text, html="") == ""


# --- HTML -------------------------------------------------------------------------


def test_html_gmail_quote_button_in_new_text_stays() -> None:
    html = 'Look:<blockquote class="gmail_quote">bonus terms, point 4</blockquote>'
    assert visible_text("", html=html) == "Look:\n\nbonus terms, point 4"


def test_html_unclosed_quote_container_cuts_to_the_end() -> None:
    html = '<div>Yes</div><div class="gmail_quote"><div>quoted <b>text</b>'
    assert visible_text("", html=html) == "Yes"


def test_html_comment_hides_tags_from_the_quote_search() -> None:
    html = '<div>Answer</div><!-- <div class="gmail_quote"> --><div>More</div>'
    assert visible_text("", html=html) == "Answer\nMore"


def test_html_everything_quoted_falls_back_to_the_whole_text() -> None:
    html = "<blockquote type=cite>Only the quote</blockquote>"
    assert visible_text("", html=html) == "Only the quote"


# --- hostile input --------------------------------------------------------------

_MB = 1_000_000
HOSTILE_LINES = {
    "header starts that never end": "On 1 a\nb <\nc\nd\ne\n",
    "header starts that end badly": "On 12 May 2025, at 14:05, x:\n",
    "every line a possible end": "x wrote:\n",
    "dates and brackets": "12 мая 2025 " + "<" * 100 + "@" * 100 + ">" * 50 + ":\n",
    "yandex-like quotes": '12.03.2024, 14:05, "' + '"' * 250 + ":\n",
    "alternating quotes": "> a\nb\n",
    "deep quote signs": "> " * 400 + "\n",
    "field lines": "To: a\n",
    "from lines": "From: a\nx\n",
    "rules": "-" * 299 + "\n",
    "signature look-alikes": "Sent from my " + "a " * 100 + "\n",
    "marker pieces": "##- Please type your reply above this\n",
    "mixed": "On 12 May 2025 John <a@b> \nSent from my iPhone\n--\n____\n> x\nFrom: y\n",
    "one long line": "On 1 " + "wrote " * 40,
}


@pytest.mark.parametrize("unit", list(HOSTILE_LINES.values()), ids=list(HOSTILE_LINES))
def test_one_megabyte_of_hostile_lines_takes_under_a_second(unit: str) -> None:
    text = (unit * (_MB // len(unit) + 1))[:_MB]
    started = time.perf_counter()
    visible_text(text)
    assert time.perf_counter() - started < 1.0


def test_one_megabyte_line_takes_under_a_second() -> None:
    text = "On 1 " + "x" * _MB + " <a@b>:\n> quote"
    started = time.perf_counter()
    visible_text(text)
    assert time.perf_counter() - started < 1.0
