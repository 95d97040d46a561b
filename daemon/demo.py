"""`ticketd demo`: a self-contained tour on SQLite, a local Maildir and an SMTP sink.

It builds a fresh working folder, migrates a SQLite database, delivers realistic mails
(Russian and English, a screenshot attached, a follow-up, an out-of-office, a resent copy,
bytes that are no mail) to a Maildir that the daemon's own runner drains, sends the
acknowledgements and the agents' notifications to a local SMTP sink, lets an agent answer
from her mail client, runs the SLA monitor a day later to show a breach escalation, and
prints what happened.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP, default
from pathlib import Path

import click
from aiosmtpd.controller import Controller

from config import load_settings
from daemon import app as app_mod
from daemon.mailbox import MailboxRunner
from daemon.maildir import MaildirSource
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
        ("a player's out-of-office reply", _mail(
            "Sam Hill <sam@players.example>", "Automatic reply: My bet was settled wrongly",
            "I am away until Monday.", "ooo-1", Auto_Submitted="auto-replied")),
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


AUTHSERV = "mx.casino.example"


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
        "TICKETD_SECURITY__AUTHSERV_ID": AUTHSERV,
        "TICKETD_SLA__TEAM_LEAD_ADDRESS": "lead@casino.example",
        "TICKETD_SLA__HEAD_OF_SUPPORT_ADDRESS": "head@casino.example",
        "TICKETD_TEAM__AGENTS": '[{address = "anna@casino.example", name = "Anna", '
                                'groups = ["payments", "support", "responsible_gaming"]}]',
    })
    application = app_mod.build(settings, check_schema=False)
    click.echo(f"ticketd demo in {root}")
    click.echo(f"mailbox: the Maildir {root / 'mailbox'}; a local SMTP sink on 127.0.0.1:{port} "
               f"writes what ticketd sends to {root / 'sent'}")
    click.echo("migrating the SQLite database ...")
    db.upgrade(application.engine)
    source = MaildirSource(root / "mailbox")
    mails = sample_mails()
    mails[5] = (mails[5][0], mails[0][1])
    for _, raw in mails:
        source.root.add(raw)
    click.echo(f"\n{len(mails)} sample mails delivered to the mailbox; the runner drains it:")
    labels = iter(label for label, _ in mails)
    runner = MailboxRunner(source, application.ingestor, application.sessions, name="demo",
                           on_result=lambda r, _s: _say(next(labels), r))
    runner.drain()
    _deliver(settings, application, "acknowledgements and notifications")
    _agent_answers(root, settings, application, source, runner)
    _sla_breach(settings, application)
    _report(application, root)
    return 0


def _say(label: str, result) -> None:  # noqa: ANN001 - daemon.ingest.IngestResult
    number = f" #{result.ticket_number}" if result.ticket_number else ""
    note = " (already stored, nothing doubled)" if result.duplicate else ""
    reason = f" — {result.reason}" if result.reason else ""
    click.echo(f"  {label:<45} → {result.outcome}{number}{note}{reason}")


def _deliver(settings, application: app_mod.App, what: str, now=None) -> None:  # noqa: ANN001
    clock = {"now": lambda: now} if now else {}
    stats = asyncio.run(application.outbox_sender(**clock).drain())
    click.echo(f"  outbox: {stats.sent} sent ({what})")


def _agent_answers(root: Path, settings, application: app_mod.App, source: MaildirSource,  # noqa: ANN001
                   runner: MailboxRunner) -> None:
    """Anna answers the bet dispute from her mail client, replying to the notification."""
    sent = sorted((root / "sent").glob("*anna@casino.example.eml"))
    note = next(p for p in sent if b"My bet was settled wrongly" in p.read_bytes())
    notification = message_from_bytes(note.read_bytes(), policy=default)
    reply = EmailMessage()
    reply["Authentication-Results"] = f"{AUTHSERV}; dkim=pass header.d=casino.example"
    reply["From"] = "Anna <anna@casino.example>"
    reply["To"] = str(notification["Reply-To"])
    reply["Subject"] = "Re: " + str(notification["Subject"])
    reply["In-Reply-To"] = reply["References"] = str(notification["Message-ID"])
    quoted = "\n".join("> " + line for line in
                       notification.get_body(("plain",)).get_content().splitlines())
    reply.set_content("Hello Sam, we checked the result: the match ended 2:1, so your "
                      "accumulator won. We have resettled it and credited your account.\n\n"
                      f"On Wed, Casino Support wrote:\n{quoted}\n")
    source.root.add(reply.as_bytes(policy=SMTP))
    click.echo("\nthe agent Anna replies to her notification from her own mail client:")
    runner.on_result = lambda r, _s: _say("Anna's reply to the bet dispute", r)
    runner.drain()
    _deliver(settings, application, "the answer, relayed to the player from the support address")


def _sla_breach(settings, application: app_mod.App) -> None:  # noqa: ANN001
    """Nobody answers the refund: a day later its first-response promise is broken."""
    later = datetime.now(UTC) + timedelta(hours=25)
    click.echo(f"\nthe SLA monitor, on an accelerated clock at {later:%Y-%m-%d %H:%M} UTC:")
    stats = application.sla_monitor().run_once(later)
    for item in stats.escalations:
        click.echo(f"  #{item.ticket} {item.clock_kind} {item.stage_name} → "
                   f"{', '.join(item.recipients) or item.withheld}")
    _deliver(settings, application, "escalations", now=later)


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
                f"{ticket.status:<8} {ticket.subject!r} from {ticket.requester.address}: "
                f"{incoming} in, {len(messages) - incoming} out, {files} attachment(s)"
            )
    click.echo(f"\nmail ticketd sent ({root / 'sent'}):")
    for path in sorted((root / "sent").glob("*.eml")):
        msg = message_from_bytes(path.read_bytes(), policy=default)
        click.echo(f"  {path.name}: {msg['Subject']}")
    click.echo(
        f"\nlook closer: TICKETD_DATABASE__URL=sqlite:///{root / 'ticketd.db'} "
        f"TICKETD_STORAGE__PATH={root / 'state'} ticketd show NUMBER"
    )
