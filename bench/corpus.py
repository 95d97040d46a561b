"""A deterministic backlog of player mails: Russian and English, 30% with attachments,
half of them follow-ups to earlier mails of the same backlog."""

from __future__ import annotations

import random
from collections.abc import Iterator
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


def backlog(count: int, seed: int = 7, domain: str = "players.test") -> Iterator[bytes]:
    rng = random.Random(seed)
    sent: list[tuple[str, str, str]] = []  # (message-id, sender, subject) of earlier mails
    blob = bytes(rng.getrandbits(8) for _ in range(48 * 1024))
    for i in range(count):
        russian = rng.random() < 0.5
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
        msg["Subject"] = subject
        msg["Date"] = "Fri, 20 Nov 2026 12:00:00 +0000"
        msg_id = f"<bench-{seed}-{i}@{domain}>"
        msg["Message-ID"] = msg_id
        if reply_to:
            msg["In-Reply-To"] = reply_to
            msg["References"] = reply_to
        body = (BODY_RU if russian else BODY_EN).format(n=rng.randint(10, 9999), tx=rng.getrandbits(40))
        msg.set_content(body * rng.randint(2, 12), charset="utf-8")
        if rng.random() < 0.3:
            size = rng.randint(8, 48) * 1024
            msg.add_attachment(blob[:size], maintype="image", subtype="png", filename=f"screen{i}.png")
        sent.append((msg_id, sender, subject if not reply_to else subject.split(": ", 1)[1]))
        yield msg.as_bytes(policy=SMTP)
