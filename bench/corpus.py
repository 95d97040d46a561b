"""A deterministic backlog of player mails: Russian and English, a third with a 20–200 KB
attachment, Russian written in UTF-8, KOI8-R and Windows-1251 (body and subject in the same
charset, as the clients that use them send it), half of them follow-ups to earlier mails of
the same backlog."""

from __future__ import annotations

import random
from collections.abc import Iterator
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP

SUBJECTS_RU = ["Возврат депозита", "Ставка рассчитана неверно", "Не могу вывести средства",
               "Прошу закрыть аккаунт", "Ошибка при оплате", "Жалоба на решение"]
SUBJECTS_EN = ["Refund of my deposit", "Bet settled wrongly", "Withdrawal pending for days",
               "Please close my account", "Payment failed", "Appeal against your decision"]
BODY_RU = ("Здравствуйте! Я пополнил счёт на {n} рублей, но деньги не пришли. "
           "Номер транзакции {tx}. Прошу разобраться и вернуть средства.\n")
BODY_EN = ("Hello, I deposited {n} EUR yesterday but my balance did not change. "
           "Transaction {tx}. Please look into it and refund me.\n")
RUSSIAN_CHARSETS = ("utf-8", "koi8-r", "windows-1251")
ATTACHMENT_KB = (20, 200)


def backlog(count: int, seed: int = 7, domain: str = "players.test") -> Iterator[bytes]:
    rng = random.Random(seed)
    sent: list[tuple[str, str, str]] = []  # (message-id, sender, subject) of earlier mails
    blob = rng.randbytes(ATTACHMENT_KB[1] * 1024)
    for i in range(count):
        russian = rng.random() < 0.5
        charset = rng.choice(RUSSIAN_CHARSETS) if russian else "utf-8"
        if sent and rng.random() < 0.5:
            parent_id, sender, subject = rng.choice(sent)
            subject = ("Re: " if not russian else "Ответ: ") + subject
            reply_to = parent_id
        else:
            sender = f"player{i}@{domain}"
            subject = rng.choice(SUBJECTS_RU if russian else SUBJECTS_EN)
            reply_to = None
        msg = EmailMessage()
        msg["From"] = f"Player {i} <{sender}>"
        msg["To"] = "support@casino.test"
        if charset == "utf-8":
            msg["Subject"] = subject
        else:  # encoded words in the mail's own charset, as the stdlib would not write them
            msg.set_raw("Subject", Header(subject, charset).encode())
        msg["Date"] = "Fri, 20 Nov 2026 12:00:00 +0000"
        msg_id = f"<bench-{seed}-{i}@{domain}>"
        msg["Message-ID"] = msg_id
        if reply_to:
            msg["In-Reply-To"] = reply_to
            msg["References"] = reply_to
        body = (BODY_RU if russian else BODY_EN).format(n=rng.randint(10, 9999), tx=rng.getrandbits(40))
        msg.set_content(body * rng.randint(2, 12), charset=charset)
        if rng.random() < 1 / 3:
            size = rng.randint(*ATTACHMENT_KB) * 1024
            msg.add_attachment(blob[:size], maintype="image", subtype="png", filename=f"screen{i}.png")
        sent.append((msg_id, sender, subject if not reply_to else subject.split(": ", 1)[1]))
        yield msg.as_bytes(policy=SMTP)
