"""forwarded_original: the player's mail inside an agent's forward.

Each mail is built as bytes the way its client writes a forward, parsed with
``parse()``, and read back: original sender, subject, date and first text line.
"""

from __future__ import annotations

import dataclasses
import time
from email.message import EmailMessage

import pytest

from parsers.forward import Forwarded, forwarded_original
from parsers.mail import parse
from parsers.model import Address, InboundMail

AGENT = "Agent Smith <agent.smith@casino.example>"


def forward_mail(subject: str, body: str, *, sender: str = AGENT) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "support@casino.example"
    message["Subject"] = subject
    message["Date"] = "Wed, 13 Mar 2024 09:00:00 +0300"
    message["Message-ID"] = "<fwd-1@casino.example>"
    message.set_content(body)
    return message.as_bytes()


def original_of(subject: str, body: str) -> Forwarded | None:
    return forwarded_original(parse(forward_mail(subject, body)))


def first_line(text: str) -> str:
    return text.split("\n", 1)[0]


# --- inline forwards, one per client -----------------------------------------------

GMAIL_EN = """\
Hi team, please look at this one.

---------- Forwarded message ---------
From: Ivan Petrov <Ivan.Petrov@Gmail.com>
Date: Tue, 12 Mar 2024 at 14:05
Subject: Withdrawal not received
To: <agent.smith@gmail.com>


Hello, I requested a withdrawal of 500 EUR five days ago.
It is still pending.

> On Mon, 11 Mar 2024 at 10:00, Casino Support <support@casino.example> wrote:
> Your withdrawal is being processed.
"""

GMAIL_RU = """\
Коллеги, посмотрите, пожалуйста.

---------- Пересылаемое сообщение ---------
От: Иван Петров <ivan.petrov@gmail.com>
Дата: вт, 12 мар. 2024 г. в 14:05
Тема: Не пришли деньги
Кому: <agent.smith@gmail.com>


Здравствуйте! Деньги так и не пришли на карту.
Прошло уже 5 дней.
"""

# Russian Gmail translates only "От:" and keeps the other field names in English.
GMAIL_RU_MIXED = """\
---------- Пересылаемое сообщение ---------
От: Иван Петров <ivan.petrov@gmail.com>
Date: вт, 12 мар. 2024 г. в 14:05
Subject: Не пришли деньги
To: <agent.smith@gmail.com>


Здравствуйте! Деньги так и не пришли на карту.
"""

OUTLOOK_EN_MAILTO = """\
FYI, see below.

Agent Smith

-----Original Message-----
From: Ivan Petrov [mailto:Ivan.Petrov@Mail.example]
Sent: Tuesday, March 12, 2024 2:05 PM
To: Agent Smith <agent.smith@casino.example>
Subject: Deposit missing

Hi,

I paid 100 EUR by Visa and the balance did not change.
"""

OUTLOOK_EN_RULE = """\
Please handle.

________________________________
From: Ivan Petrov <ivan.petrov@mail.example>
Sent: Tuesday, March 12, 2024 2:05 PM
To: Agent Smith <agent.smith@casino.example>
Cc: Anna Petrova <anna@mail.example>; Oleg Ivanov <oleg@mail.example>
Subject: Deposit missing

I paid 100 EUR by Visa and the balance did not change.
"""

OUTLOOK_RU_RULE = """\
Передаю в поддержку.

________________________________
От: Иван Петров <ivan.petrov@mail.example>
Отправлено: 12 марта 2024 г. 14:05
Кому: Агент Смит <agent.smith@casino.example>
Тема: Бонус не начислен

Добрый день. Бонус за депозит так и не начислен.
"""

OUTLOOK_RU_MAILTO = """\
Передаю в поддержку.

От: Иван Петров [mailto:ivan.petrov@mail.example]
Отправлено: вторник, 12 марта 2024 г. 14:05
Кому: Агент Смит
Тема: Бонус не начислен

Добрый день. Бонус за депозит так и не начислен.
"""

# Outlook wraps a long display name: the address lands on the next line.
OUTLOOK_EN_WRAPPED = """\
-----Original Message-----
From: Ivan Alexandrovich Petrov-Vodkin, Senior Partner, Petrov and Sons Trading
[mailto:ivan.petrov@mail.example]
Sent: Tuesday, March 12, 2024 2:05 PM
To: Agent Smith
Subject: Deposit missing
I paid 100 EUR by Visa and the balance did not change.
"""

APPLE_MAIL_EN = """\
Another one for you.

Begin forwarded message:

From: Ivan Petrov <ivan.petrov@icloud.com>
Subject: Account blocked
Date: 12 March 2024 at 14:05:00 GMT+3
To: Agent Smith <agent.smith@casino.example>
Reply-To: Ivan Petrov <ivan.petrov@icloud.com>

My account was blocked after the last deposit.

Sent from my iPhone
"""

APPLE_MAIL_RU = """\
Ещё одно.

Начало переадресованного сообщения:

От: Иван Петров <ivan.petrov@icloud.com>
Тема: Аккаунт заблокирован
Дата: 12 марта 2024 г., в 14:05
Кому: Агент Смит <agent.smith@casino.example>

Мой аккаунт заблокировали после последнего депозита.
"""

THUNDERBIRD_EN = """\
See the player's mail below.


-------- Forwarded Message --------
Subject: \tBonus not credited
Date: \tTue, 12 Mar 2024 14:05:00 +0300
From: \tIvan Petrov <ivan.petrov@mail.example>
To: \tagent.smith@casino.example



The welcome bonus was not credited to my account.
"""

THUNDERBIRD_RU = """\
Пересылаю письмо игрока.


-------- Пересылаемое сообщение --------
Тема: \tБонус не начислен
Дата: \tTue, 12 Mar 2024 14:05:00 +0300
От: \tИван Петров <ivan.petrov@mail.example>
Кому: \tagent.smith@casino.example



Приветственный бонус не начислен на счёт.
"""

YANDEX = """\
Посмотрите, пожалуйста.

-------- Пересылаемое сообщение --------
12.03.2024, 14:05, "Иван Петров" <Ivan.Petrov@yandex.ru>:

Здравствуйте! Вывод средств висит уже неделю.

--
С уважением,
Иван
-------- Конец пересылаемого сообщения --------

--
Агент Смит
"""

MAILRU = """\
Коллеги, это вам.


-------- Пересылаемое сообщение --------
От кого: Иван Петров <ivan.petrov@mail.ru>
Кому: agent.smith@mail.ru
Дата: Вторник, 12 марта 2024, 14:05 +03:00
Тема: Верификация

Здравствуйте. Документы для верификации отправил ещё вчера.
"""

IVAN_EN = Address("ivan.petrov@mail.example", "Ivan Petrov")
IVAN_RU = Address("ivan.petrov@mail.example", "Иван Петров")

CASES = {
    "gmail_en": (
        "Fwd: Withdrawal not received", GMAIL_EN,
        Address("ivan.petrov@gmail.com", "Ivan Petrov"), "Withdrawal not received",
        "Tue, 12 Mar 2024 at 14:05", "Hello, I requested a withdrawal of 500 EUR five days ago.",
    ),
    "gmail_ru": (
        "Fwd: Не пришли деньги", GMAIL_RU,
        Address("ivan.petrov@gmail.com", "Иван Петров"), "Не пришли деньги",
        "вт, 12 мар. 2024 г. в 14:05", "Здравствуйте! Деньги так и не пришли на карту.",
    ),
    "gmail_ru_mixed_fields": (
        "Fwd: Не пришли деньги", GMAIL_RU_MIXED,
        Address("ivan.petrov@gmail.com", "Иван Петров"), "Не пришли деньги",
        "вт, 12 мар. 2024 г. в 14:05", "Здравствуйте! Деньги так и не пришли на карту.",
    ),
    "outlook_en_mailto": (
        "FW: Deposit missing", OUTLOOK_EN_MAILTO,
        IVAN_EN, "Deposit missing", "Tuesday, March 12, 2024 2:05 PM", "Hi,",
    ),
    "outlook_en_rule": (
        "FW: Deposit missing", OUTLOOK_EN_RULE,
        IVAN_EN, "Deposit missing", "Tuesday, March 12, 2024 2:05 PM",
        "I paid 100 EUR by Visa and the balance did not change.",
    ),
    "outlook_en_wrapped_from": (
        "FW: Deposit missing", OUTLOOK_EN_WRAPPED,
        Address(
            "ivan.petrov@mail.example",
            "Ivan Alexandrovich Petrov-Vodkin, Senior Partner, Petrov and Sons Trading",
        ),
        "Deposit missing", "Tuesday, March 12, 2024 2:05 PM",
        "I paid 100 EUR by Visa and the balance did not change.",
    ),
    "outlook_ru_rule": (
        "Пересл.: Бонус не начислен", OUTLOOK_RU_RULE,
        IVAN_RU, "Бонус не начислен", "12 марта 2024 г. 14:05",
        "Добрый день. Бонус за депозит так и не начислен.",
    ),
    "outlook_ru_mailto_no_rule": (
        "FW: Бонус не начислен", OUTLOOK_RU_MAILTO,
        IVAN_RU, "Бонус не начислен", "вторник, 12 марта 2024 г. 14:05",
        "Добрый день. Бонус за депозит так и не начислен.",
    ),
    "apple_mail_en": (
        "Fwd: Account blocked", APPLE_MAIL_EN,
        Address("ivan.petrov@icloud.com", "Ivan Petrov"), "Account blocked",
        "12 March 2024 at 14:05:00 GMT+3", "My account was blocked after the last deposit.",
    ),
    "apple_mail_ru": (
        "Fwd: Аккаунт заблокирован", APPLE_MAIL_RU,
        Address("ivan.petrov@icloud.com", "Иван Петров"), "Аккаунт заблокирован",
        "12 марта 2024 г., в 14:05", "Мой аккаунт заблокировали после последнего депозита.",
    ),
    "thunderbird_en": (
        "Fwd: Bonus not credited", THUNDERBIRD_EN,
        IVAN_EN, "Bonus not credited", "Tue, 12 Mar 2024 14:05:00 +0300",
        "The welcome bonus was not credited to my account.",
    ),
    "thunderbird_ru": (
        "Fwd: Бонус не начислен", THUNDERBIRD_RU,
        IVAN_RU, "Бонус не начислен", "Tue, 12 Mar 2024 14:05:00 +0300",
        "Приветственный бонус не начислен на счёт.",
    ),
    "yandex": (
        "Fwd: Вывод средств", YANDEX,
        Address("ivan.petrov@yandex.ru", "Иван Петров"), "Вывод средств",
        "12.03.2024, 14:05", "Здравствуйте! Вывод средств висит уже неделю.",
    ),
    "mailru": (
        "Fwd: Верификация", MAILRU,
        Address("ivan.petrov@mail.ru", "Иван Петров"), "Верификация",
        "Вторник, 12 марта 2024, 14:05 +03:00",
        "Здравствуйте. Документы для верификации отправил ещё вчера.",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_inline_forward_of_each_client(case: tuple[str, str, Address, str, str, str]) -> None:
    subject, body, sender, original_subject, date, text = case
    mail = parse(forward_mail(subject, body))
    found = forwarded_original(mail)
    assert found is not None
    assert found.sender == sender
    assert found.subject == original_subject
    assert found.date == date
    assert first_line(found.text) == text
    assert found.message_id is None
    assert found.attachments == mail.attachments


def test_the_text_is_everything_below_the_header_block() -> None:
    found = original_of("Fwd: Withdrawal not received", GMAIL_EN)
    assert found is not None
    assert found.text.endswith("> Your withdrawal is being processed.")
    assert "Forwarded message" not in found.text and "Please look" not in found.text


def test_yandex_text_ends_at_its_closing_line() -> None:
    found = original_of("Fwd: Вывод средств", YANDEX)
    assert found is not None
    assert found.text.endswith("С уважением,\nИван")


def test_the_forwarding_mails_own_attachments_come_along_with_an_inline_forward() -> None:
    message = EmailMessage()
    message["From"] = AGENT
    message["Subject"] = "Fwd: Withdrawal not received"
    message.set_content(GMAIL_EN)
    message.add_attachment(b"%PDF-1.4 statement", maintype="application", subtype="pdf",
                           filename="statement.pdf")
    found = forwarded_original(parse(message.as_bytes()))
    assert found is not None
    assert [a.filename for a in found.attachments] == ["statement.pdf"]
    assert found.attachments[0].payload == b"%PDF-1.4 statement"


# --- the sender's address in each written form -----------------------------------------

ADDRESS_FORMS = {
    "name_angle": ("Ivan Petrov <Ivan.Petrov@Mail.example>", IVAN_EN),
    "quoted_name": ('"Petrov, Ivan" <ivan.petrov@mail.example>',
                    Address("ivan.petrov@mail.example", "Petrov, Ivan")),
    "bare": ("Ivan.Petrov@Mail.example", Address("ivan.petrov@mail.example")),
    "angle_only": ("<ivan.petrov@mail.example>", Address("ivan.petrov@mail.example")),
    "mailto": ("Ivan Petrov [mailto:ivan.petrov@mail.example]", IVAN_EN),
    "address_as_name": ("ivan.petrov@mail.example <ivan.petrov@mail.example>",
                        Address("ivan.petrov@mail.example")),
}  # fmt: skip


@pytest.mark.parametrize("written, expected", ADDRESS_FORMS.values(), ids=ADDRESS_FORMS.keys())
def test_address_forms(written: str, expected: Address) -> None:
    body = GMAIL_EN.replace("Ivan Petrov <Ivan.Petrov@Gmail.com>", written)
    found = original_of("Fwd: Withdrawal not received", body)
    assert found is not None
    assert found.sender == expected


def test_a_from_field_without_an_address_is_no_forward() -> None:
    body = GMAIL_EN.replace("Ivan Petrov <Ivan.Petrov@Gmail.com>", "Ivan Petrov")
    assert original_of("Fwd: Withdrawal not received", body) is None


# --- when to believe it ---------------------------------------------------------------


def test_a_forward_separator_alone_is_enough_when_the_agent_renamed_the_subject() -> None:
    found = original_of("Player complaint, urgent", GMAIL_EN)
    assert found is not None
    assert found.sender.addr == "ivan.petrov@gmail.com"
    assert found.subject == "Withdrawal not received"


def test_fwd_subject_without_a_recognisable_block_is_none() -> None:
    body = "Hi team,\n\nthe player called about a missing deposit, please check.\n\nAgent\n"
    assert original_of("Fwd: Deposit missing", body) is None


def test_an_ordinary_reply_is_none() -> None:
    body = (
        "Thanks, I will wait.\n\n"
        "On Tue, 12 Mar 2024 at 14:05, Casino Support <support@casino.example> wrote:\n"
        "> Hello Ivan,\n> your withdrawal is being processed.\n"
    )
    assert original_of("Re: [#4821] Withdrawal not received", body) is None


def test_an_outlook_reply_with_original_message_is_no_forward() -> None:
    body = OUTLOOK_EN_MAILTO.replace("FYI, see below.", "Thanks, it works now.")
    assert original_of("RE: Deposit missing", body) is None
    assert original_of("RE: Deposit missing", OUTLOOK_RU_RULE) is None


def test_forward_subject_prefixes_are_stripped_when_the_block_has_no_subject() -> None:
    found = original_of("[EXT] WG: TR: Fwd[2]: Вывод средств", YANDEX)
    assert found is not None
    assert found.subject == "Вывод средств"


# --- an attached message -----------------------------------------------------------------

SCREENSHOT = bytes(range(256)) * 8 + b"\r\n\n\r\x00end"


def player_mail() -> EmailMessage:
    original = EmailMessage()
    original["From"] = "Ivan Petrov <Ivan.Petrov@Mail.example>"
    original["To"] = "agent.smith@casino.example"
    original["Subject"] = "Вывод не пришёл"
    original["Date"] = "Tue, 12 Mar 2024 14:05:00 +0300"
    original["Message-ID"] = "<player-42@mail.example>"
    original.set_content("Здравствуйте!\nВывод не пришёл, скриншот во вложении.\n")
    original.add_attachment(SCREENSHOT, maintype="image", subtype="png", filename="screen.png")
    return original


def attached_forward(subject: str = "Fwd: Withdrawal not received") -> bytes:
    forward = EmailMessage()
    forward["From"] = AGENT
    forward["To"] = "support@casino.example"
    forward["Subject"] = subject
    forward.set_content("See the attached mail from the player.\n")
    forward.add_attachment(player_mail())  # message/rfc822
    return forward.as_bytes()


def test_an_attached_message_is_the_original() -> None:
    mail = parse(attached_forward())
    assert [a.content_type for a in mail.attachments] == ["message/rfc822"]
    found = forwarded_original(mail)
    assert found is not None
    assert found.sender == Address("ivan.petrov@mail.example", "Ivan Petrov")
    assert found.subject == "Вывод не пришёл"
    assert first_line(found.text) == "Здравствуйте!"
    assert found.date == "Tue, 12 Mar 2024 14:05:00 +0300"
    assert found.message_id == "player-42@mail.example"
    [screen] = found.attachments
    assert (screen.filename, screen.content_type) == ("screen.png", "image/png")
    assert screen.payload == SCREENSHOT


def test_an_attached_message_comes_before_an_inline_block() -> None:
    message = EmailMessage()
    message["From"] = AGENT
    message["Subject"] = "Fwd: two of them"
    message.set_content(GMAIL_EN)
    message.add_attachment(player_mail())
    found = forwarded_original(parse(message.as_bytes()))
    assert found is not None
    assert found.message_id == "player-42@mail.example"


def test_a_bounce_with_the_returned_message_is_no_forward() -> None:
    raw = attached_forward(subject="Undelivered Mail Returned to Sender")
    assert forwarded_original(parse(raw)) is None


# --- hostile text ------------------------------------------------------------------------

MB = 1024 * 1024


def _repeat(chunk: str) -> str:
    return chunk * (MB // len(chunk.encode()) + 1)


HOSTILE = {
    "one_long_from_line": "From: " + "<[mailto:" * (MB // 9),
    "separators_with_broken_fields": _repeat(
        "---------- Forwarded message ---------\nFrom: " + "<" * 200 + "[mailto:" * 20 + "\n"
    ),
    "field_blocks_without_address": _repeat("From: Ivan\nSent: Tue\nTo: x\nSubject: y\n"),
    "yandex_lines_without_address": _repeat(
        "-------- Пересылаемое сообщение --------\n12.03.2024, 14:05, " + "\t " * 140 + "x:\n"
    ),
    "dashes_and_rules": _repeat("-" * 299 + "\n" + "_" * 299 + "\n--\n-- \n"),
    "one_dash_line": "-" * MB,
    "colons": _repeat(":" * 299 + "\n" + "От кого:\n"),
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_megabyte_is_fast(text: str) -> None:
    assert len(text.encode()) >= MB
    mail: InboundMail = dataclasses.replace(
        parse(forward_mail("Fwd: " + "[" * 200 + "Fwd:" * 100, "x")), text=text
    )
    started = time.perf_counter()
    found = forwarded_original(mail)
    assert time.perf_counter() - started < 1.0
    assert found is None
