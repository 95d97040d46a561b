"""Two brands in one daemon, as an operator runs it: `ticketd run` against two real Dovecot
mailboxes and a real SMTP server. Each brand's player is answered by that brand, in the
player's language; a player who asked for self-exclusion under one brand is flagged to the
team when they write under the other."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from storage import db
from storage.models import Contact, Ticket
from tests.outbox.smtp_sink import Sink, SmtpServer, free_port
from tests.support.mails import mail

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]
SECRET = "brands-test-secret-0123456789abcdef"
AGENT = "anna@desk.test"


@pytest.fixture
def sink():  # noqa: ANN201
    server = SmtpServer(Sink(), free_port()).start()
    yield server
    server.stop()


def _secret(directory: Path, name: str, value: str) -> Path:
    path = directory / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def two_brand_config(directory: Path, db_url: str, lucky, stars, smtp_port: int) -> Path:  # noqa: ANN001
    """[support] stays the desk's own name; two brands, each with its own mailbox."""
    lucky_pw = _secret(directory, "lucky-password", lucky.password)
    stars_pw = _secret(directory, "stars-password", stars.password)
    text = f'''
[support]
address = "desk@ops.test"
name = "Operations Desk"

[database]
url = "{db_url}"

[storage]
path = "{directory / 'state'}"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"

[outbox]
interval = "1s"

[scan]
enabled = false

[team]
agents = [{{ address = "{AGENT}", name = "Anna", groups = ["support", "responsible_gaming"] }}]

[[brands]]
name = "lucky"
address = "help@lucky.test"
display_name = "Lucky Casino Help"
default_language = "de"
signature = "Lucky Casino, licensed and regulated"

[[brands]]
name = "stars"
address = "support@stars.test"
display_name = "Stars Poker Support"
default_language = "ru"

[[mailboxes]]
name = "lucky-inbox"
brand = "lucky"
host = "{lucky.host}"
port = {lucky.port}
tls = "none"
username = "{lucky.username}"
password_file = "{lucky_pw}"
idle_timeout = 30

[[mailboxes]]
name = "stars-inbox"
brand = "stars"
host = "{stars.host}"
port = {stars.port}
tls = "none"
username = "{stars.username}"
password_file = "{stars_pw}"
idle_timeout = 30
'''
    path = directory / "ticketd.toml"
    path.write_text(text)
    return path


def wait_for(check, seconds: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {seconds} s")


def to(sink: SmtpServer, address: str) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(r.content, policy=email.policy.default)
            for r in list(sink.handler.received) if address in r.rcpt_tos]


def body(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def ticketd(config: Path, *args: str) -> str:
    env = {**os.environ, "TICKETD_SECURITY__SECRET": SECRET}
    done = subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), *args],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_two_brands_in_one_daemon_each_answer_their_players_and_share_one_contact(
        dovecot, db_url: str, tmp_path: Path, sink: SmtpServer) -> None:  # noqa: ANN001
    lucky, stars = dovecot.new_account(), dovecot.new_account()
    config = two_brand_config(tmp_path, db_url, lucky, stars, sink.port)
    with dovecot.client(lucky) as client:
        client.append("INBOX", mail(
            sender="Jonas Weber <jonas@player.test>", to="help@lucky.test",
            subject="Auszahlung fehlt",
            body="Guten Tag, ich warte seit drei Tagen auf meine Auszahlung von 200 Euro. "
                 "Können Sie mir bitte sagen, wann das Geld auf meinem Konto ankommt?"))
        client.append("INBOX", mail(
            sender="Sam Doe <sam@player.test>", to="help@lucky.test",
            subject="Please exclude me",
            body="I want to self-exclude from your casino. Please close my account, I "
                 "cannot control my gambling anymore."))
    with dovecot.client(stars) as client:
        client.append("INBOX", mail(
            sender="Иван Петров <ivan@player.test>", to="support@stars.test",
            subject="Не пришёл вывод",
            body="Здравствуйте, я жду вывод средств уже три дня. Подскажите, пожалуйста, "
                 "когда деньги поступят на мой счёт?"))
        # Nothing to tell the language by: the brand's default language answers.
        client.append("INBOX", mail(sender="lena@player.test", to="support@stars.test",
                                    subject="ID 48213", body="48213"))
    log = tmp_path / "daemon.log"
    env = {**os.environ, "TICKETD_SECURITY__SECRET": SECRET}
    ticketd(config, "db", "upgrade")
    with log.open("a") as out:
        daemon = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config),
                                   "run"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: to(sink, "jonas@player.test") and to(sink, "ivan@player.test")
                 and to(sink, "sam@player.test"), 60, "the three acknowledgements")

        # Each brand's player is answered by that brand, in the player's language.
        (german,) = to(sink, "jonas@player.test")
        assert german["From"].addresses[0].addr_spec == "help@lucky.test"
        assert german["From"].addresses[0].display_name == "Lucky Casino Help"
        assert "wir haben Ihre Anfrage" in body(german)
        assert "Lucky Casino, licensed and regulated" in body(german)  # the brand's signature
        assert german["Message-ID"].endswith("@lucky.test>")
        (russian,) = to(sink, "ivan@player.test")
        assert russian["From"].addresses[0].addr_spec == "support@stars.test"
        assert russian["From"].addresses[0].display_name == "Stars Poker Support"
        assert "Мы получили Ваше обращение" in body(russian)
        assert "Lucky Casino" not in body(russian)
        (english,) = to(sink, "sam@player.test")
        assert english["From"].addresses[0].addr_spec == "help@lucky.test"
        assert "we have received your request" in body(english)  # the player's, not "de"
        wait_for(lambda: to(sink, "lena@player.test"), 30, "the acknowledgement to lena")
        (default,) = to(sink, "lena@player.test")
        assert "Мы получили Ваше обращение" in body(default)  # stars' default language

        # A reload renames a brand; its mailbox's next player hears the new name.
        config.write_text(config.read_text().replace(
            'display_name = "Lucky Casino Help"', 'display_name = "Lucky Casino Desk"'))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in log.read_text(), 30, "the reload")
        with dovecot.client(lucky) as client:
            client.append("INBOX", mail(sender="nina@player.test", to="help@lucky.test",
                                        subject="Bonus", body="Hello, where is my bonus?"))
        wait_for(lambda: to(sink, "nina@player.test"), 60, "the ack after the reload")
        (renamed,) = to(sink, "nina@player.test")
        assert renamed["From"].addresses[0].display_name == "Lucky Casino Desk"
        assert renamed["From"].addresses[0].addr_spec == "help@lucky.test"

        # The self-excluded player now writes under the other brand.
        with dovecot.client(stars) as client:
            client.append("INBOX", mail(
                sender="Sam Doe <sam@player.test>", to="support@stars.test",
                subject="Deposit question",
                body="Hello, how long does a card deposit take to show up on my balance?"))
        wait_for(lambda: len(to(sink, "sam@player.test")) == 2, 60, "the second brand's ack")
        stars_ack = to(sink, "sam@player.test")[1]
        assert stars_ack["From"].addresses[0].addr_spec == "support@stars.test"
        assert stars_ack["From"].addresses[0].display_name == "Stars Poker Support"
        assert "we have received your request" in body(stars_ack)
        wait_for(lambda: any("Deposit question" in str(m["Subject"]) for m in to(sink, AGENT)),
                 60, "the notification of the second brand's ticket")
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(30)
    assert code == 0, log.read_text()

    sessions = db.session_factory(db.make_engine(db_url))
    with sessions() as session:
        brands = {t.subject: t.brand for t in session.scalars(select(Ticket))}
        contacts = session.scalars(select(Contact).where(
            Contact.address == "sam@player.test")).all()
        deposit = session.scalar(select(Ticket).where(Ticket.subject == "Deposit question"))
    assert brands == {"Auszahlung fehlt": "lucky", "Please exclude me": "lucky",
                      "Не пришёл вывод": "stars", "ID 48213": "stars", "Bonus": "lucky",
                      "Deposit question": "stars"}
    (sam,) = contacts  # one person, one contact, under both brands
    assert sam.safeguarded_at is not None and sam.safeguard_brand == "lucky"
    assert deposit.group == "responsible_gaming"  # taken up by the team that handles it

    (notice,) = [m for m in to(sink, AGENT) if "Deposit question" in str(m["Subject"])]
    assert notice["From"].addresses[0].addr_spec == "support@stars.test"
    text = body(notice)
    assert "Responsible gambling: this player is flagged since" in text
    assert "Lucky Casino Desk: self-exclusion" in text  # the brand as it is named now
    assert "Brand: Stars Poker Support" in text

    shown = json.loads(ticketd(config, "show", str(deposit.number), "--json"))
    assert shown["brand"] == "stars"
    assert shown["requester_safeguarded"]["brand"] == "lucky"
    record = ticketd(config, "contact", "show", "sam@player.test")
    assert "RESPONSIBLE GAMBLING: self_exclusion" in record and "brand lucky" in record
    assert "brand=lucky" in record and "brand=stars" in record


def start(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TICKETD_SECURITY__SECRET": SECRET}
    with log.open("a") as out:
        return subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config),
                                 "run"], stdout=out, stderr=subprocess.STDOUT, env=env)


def test_each_mailbox_is_watched_by_one_daemon_at_a_time_and_taken_over(
        dovecot, pg_url: str, tmp_path: Path, sink: SmtpServer) -> None:  # noqa: ANN001
    """Two daemons on one PostgreSQL: the first holds both mailboxes' leases, the second
    stands by for each; killed, the first lets go of both and the second answers as each
    brand."""
    lucky, stars = dovecot.new_account(), dovecot.new_account()
    config = two_brand_config(tmp_path, pg_url, lucky, stars, sink.port)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start(config, first_log)
    second = None
    try:
        wait_for(lambda: first_log.read_text().count("mailbox lease taken") == 2, 30,
                 "the first daemon's two leases")
        second = start(config, second_log)
        wait_for(lambda: second_log.read_text().count("standing by") == 2, 30,
                 "the second daemon standing by for both mailboxes")
        first.kill()
        first.wait(10)
        wait_for(lambda: second_log.read_text().count("mailbox lease taken") == 2, 60,
                 "the second daemon taking both mailboxes over")
        with dovecot.client(lucky) as client:
            client.append("INBOX", mail(sender="mia@player.test", to="help@lucky.test",
                                        subject="Hello", body="Hello, a question."))
        with dovecot.client(stars) as client:
            client.append("INBOX", mail(sender="olga@player.test", to="support@stars.test",
                                        subject="Hello", body="Hello, a question."))
        wait_for(lambda: to(sink, "mia@player.test") and to(sink, "olga@player.test"), 60,
                 "both acknowledgements")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    (mia,) = to(sink, "mia@player.test")
    (olga,) = to(sink, "olga@player.test")
    assert mia["From"].addresses[0].addr_spec == "help@lucky.test"
    assert olga["From"].addresses[0].addr_spec == "support@stars.test"
