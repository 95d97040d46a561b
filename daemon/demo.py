"""`ticketd demo`: a self-contained tour on SQLite with sample complaints.

It builds a fresh working folder, migrates a SQLite database, ingests a
handful of realistic mails (Russian and English, a screenshot attached, a
follow-up, a mail too broken to parse) through the same pipeline the daemon
uses, and prints what became of each.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
from email import message_from_bytes
from email.policy import default
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import click
from aiosmtpd.controller import Controller

from config import load_settings
from daemon import app as app_mod
from daemon.outbox import OutboxSender
from storage import db, queries

# A 1x1 PNG, standing in for a player's screenshot.
SCREENSHOT = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def _mail(sender: str, subject: str, body: str, msgid: str, **extra: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "support@casino.example", subject
    msg["Message-ID"] = f"<{msgid}@players.example>"
    for name, value in extra.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body, charset="utf-8")
    return msg.as_bytes(policy=SMTP)


def sample_mails() -> list[tuple[str, bytes]]:
    refund = EmailMessage()
    refund["From"] = "Иван Петров <ivan.petrov@players.example>"
    refund["To"] = "support@casino.example"
    refund["Subject"] = "Возврат депозита"
    refund["Message-ID"] = "<refund-1@players.example>"
    refund.set_content(
        "Здравствуйте! Я внёс депозит 5000 рублей, деньги списаны, но на счёт не пришли.\n"
        "Прошу вернуть средства. Скриншот платежа во вложении.\n\nИван", charset="windows-1251"
    )
    refund.add_attachment(SCREENSHOT, maintype="image", subtype="png", filename="платёж.png")
    return [
        ("refund, Russian, windows-1251, screenshot", refund.as_bytes(policy=SMTP)),
        ("wrongly settled bet, English", _mail(
            "Sam Hill <sam@players.example>", "My bet was settled wrongly",
            "My accumulator bet 88123 was settled as lost but the last match ended 2:1.\n"
            "Please check the settlement.", "bet-1")),
        ("self-exclusion, English", _mail(
            "Alex <alex@players.example>", "Please close my account",
            "I want to self-exclude for 6 months. I have a gambling problem.", "excl-1")),
        ("follow-up to the refund", _mail(
            "Иван Петров <ivan.petrov@players.example>", "Re: Возврат депозита",
            "Добавляю номер транзакции: 7781-22.", "refund-2",
            In_Reply_To="<refund-1@players.example>")),
        ("out-of-office from our own address", _mail(
            "Casino Support <support@casino.example>", "Automatic reply",
            "I am away.", "ooo-1")),
        ("the same refund mail again (resent)", b""),
        ("not a mail at all", b"\x00\x01binary garbage\xff" * 20),
    ]


def run(workdir: str) -> int:
    root = Path(workdir).resolve()
    if root.exists():
        shutil.rmtree(root)
    (root / "sent").mkdir(parents=True)
    sink = _SmtpSink(root / "sent")
    controller = Controller(sink, hostname="127.0.0.1", port=_free_port(), ready_timeout=10)
    controller.start()
    try:
        return _tour(root, controller)
    finally:
        controller.stop()


def _tour(root: Path, controller: Controller) -> int:
    port = controller.port
    settings = load_settings(None, {
        "TICKETD_SUPPORT__ADDRESS": "support@casino.example",
        "TICKETD_SUPPORT__NAME": "Casino Support",
        "TICKETD_STORAGE__PATH": str(root / "state"),
        "TICKETD_DATABASE__URL": f"sqlite:///{root / 'ticketd.db'}",
        "TICKETD_SMTP__HOST": "127.0.0.1",
        "TICKETD_SMTP__PORT": str(port),
        "TICKETD_SMTP__TLS": "none",
        "TICKETD_SECURITY__SECRET": secrets.token_hex(32),
    })
    application = app_mod.build(settings, check_schema=False)
    click.echo(f"ticketd demo in {root}")
    click.echo(f"a local SMTP sink listens on 127.0.0.1:{port}; what ticketd sends lands in sent/")
    click.echo("migrating the SQLite database ...")
    db.upgrade(application.engine)
    mails = sample_mails()
    mails[5] = (mails[5][0], mails[0][1])
    click.echo("\ningesting sample mails:")
    for label, raw in mails:
        result = application.ingestor.ingest(raw, source="demo")
        number = f" #{result.ticket_number}" if result.ticket_number else ""
        note = " (already stored, nothing doubled)" if result.duplicate else ""
        reason = f" — {result.reason}" if result.reason else ""
        click.echo(f"  {label:<45} → {result.outcome}{number}{note}{reason}")
    stats = asyncio.run(OutboxSender.from_settings(settings, application.sessions).drain())
    click.echo(f"\ndelivering the outbox: {stats.sent} sent, {stats.retried} to retry, {stats.dead} dead")
    _report(application, root)
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _SmtpSink:
    """The demo's mail server: every message it accepts is written to a file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        self.count += 1
        name = f"{self.count:02d}-{envelope.rcpt_tos[0]}.eml"
        (self.folder / name).write_bytes(envelope.original_content or envelope.content)
        return "250 OK"


def _report(application: app_mod.App, root: Path) -> None:
    click.echo("\ntickets:")
    with application.sessions() as session:
        for ticket in reversed(queries.list_tickets(session)):
            messages = queries.ticket_by_ref(session, ticket.number).messages
            files = sum(len(m.attachments) for m in messages)
            incoming = sum(1 for m in messages if m.direction == "in")
            click.echo(
                f"  #{ticket.number} [{ticket.category}/{ticket.priority}/{ticket.language}] "
                f"{ticket.subject!r} from {ticket.requester.address}: "
                f"{incoming} incoming, {len(messages) - incoming} sent, {files} attachment(s)"
            )
    click.echo("\nacknowledgements delivered:")
    for path in sorted((root / "sent").glob("*.eml")):
        msg = message_from_bytes(path.read_bytes(), policy=default)
        click.echo(f"  {path.name}: {msg['Subject']}")
    click.echo(
        f"\nlook closer: TICKETD_DATABASE__URL=sqlite:///{root / 'ticketd.db'} "
        f"TICKETD_STORAGE__PATH={root / 'state'} ticketd show NUMBER"
    )
