"""Spam and malware with the daemon run as a user runs it: a real Dovecot mailbox, a real
clamd, a real SMTP server, and the `ticketd` commands (run, deliver, spam list/release)."""

from __future__ import annotations

import base64
import email
import json
import os
import subprocess
import sys
from email.policy import default
from pathlib import Path

import pytest

from tests.outbox.smtp_sink import Sink, SmtpServer, free_port
from tests.support.clamd import EICAR, ClamdServer
from tests.support.configs import write_config
from tests.support.mails import PNG, mail

pytestmark = pytest.mark.dovecot
SECRET = "e2e-safety-secret-0123456789abcdef"
OUR_HOP = "from mx.mail.test (mx.mail.test [192.0.2.9]) by mx1.casino.test (Postfix) with ESMTPS"
THEIR_HOP = "from [10.1.1.1] by mx.mail.test (Postfix) with ESMTPSA"


def ticketd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TICKETD_SECURITY__SECRET": SECRET})


def ok(config: Path, *args: str) -> str:
    done = ticketd(config, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def delivered_by_our_mta(raw: bytes, *verdict: tuple[str, str]) -> bytes:
    """What our MTA hands over: its spam filter's headers and its Received on top."""
    head = [*verdict, ("Received", OUR_HOP), ("Received", THEIR_HOP)]
    return b"".join(f"{n}: {v}\r\n".encode() for n, v in head) + raw


@pytest.fixture
def desk(dovecot, db_url: str, tmp_path: Path, clamd: ClamdServer):  # noqa: ANN001, ANN201
    sink = SmtpServer(Sink(), free_port()).start()
    account = dovecot.new_account()
    config = write_config(tmp_path, db_url, account,
                          smtp={"host": "127.0.0.1", "port": sink.port, "tls": "none"},
                          scan={"socket": str(clamd.socket_path)})
    config.write_text(config.read_text() + (
        '\n[[team.agents]]\naddress = "anna@casino.test"\nname = "Anna"\n'
        'groups = ["payments"]\n'))
    assert ticketd(config, "db", "upgrade").returncode == 0
    yield dovecot, account, config, sink
    sink.stop()


def test_spam_goes_to_junk_and_a_release_makes_it_a_ticket(desk) -> None:  # noqa: ANN001
    dovecot, account, config, sink = desk
    spam = delivered_by_our_mta(mail(subject="Refund of my deposit", body="Please refund."),
                                ("X-Spam-Flag", "YES"), ("X-Spam-Status", "Yes, score=12.0"))
    # A player's own header, written before our MTA saw the mail, changes nothing.
    player = delivered_by_our_mta(mail(sender="b@mail.test", subject="Bet settled wrongly",
                                       headers={"X-Spam-Flag": "YES"}))
    dovecot.append(account, spam)
    dovecot.append(account, player)
    ok(config, "run", "--once")
    ok(config, "deliver", "--once")
    assert dovecot.uids(account, "INBOX") == []
    assert len(dovecot.uids(account, "Junk")) == 1 and len(dovecot.uids(account, "Processed")) == 1
    assert [t["subject"] for t in json.loads(ok(config, "tickets", "--json"))] == [
        "Bet settled wrongly"]
    assert all(r.rcpt_tos != ("player@mail.test",) for r in sink.handler.received)  # no backscatter
    [listed] = json.loads(ok(config, "spam", "list", "--json"))
    assert listed["verdict"].startswith("x-spam-flag: YES")
    out = ok(config, "spam", "release", str(listed["id"]))
    assert "outcome=ticket" in out and "moved=Junk->Processed" in out
    assert json.loads(ok(config, "spam", "list", "--json")) == []
    # Out of Junk, into Processed, once: the folder says what the desk decided.
    assert dovecot.uids(account, "Junk") == [] and len(dovecot.uids(account, "Processed")) == 2
    subjects = sorted(t["subject"] for t in json.loads(ok(config, "tickets", "--json")))
    assert subjects == ["Bet settled wrongly", "Refund of my deposit"]
    ok(config, "deliver", "--once")
    assert any(r.rcpt_tos == ("player@mail.test",) for r in sink.handler.received)  # now acked
    assert ticketd(config, "spam", "release", str(listed["id"])).returncode == 1  # not twice
    assert dovecot.uids(account, "Junk") == [] and len(dovecot.uids(account, "Processed")) == 2


def test_a_release_moves_only_its_own_mail_out_of_junk(desk) -> None:  # noqa: ANN001
    """Two spams of the same size, one released: that one leaves Junk, the other stays, and
    what Processed receives is the released mail's bytes."""
    dovecot, account, config, _ = desk
    spams = [delivered_by_our_mta(mail(subject=f"Prize number {n}", body=f"Win {n} now!",
                                       message_id=f"<prize{n}@mail.test>"),
                                  ("X-Spam-Flag", "YES")) for n in (1, 2)]
    assert len(spams[0]) == len(spams[1])
    for raw in spams:
        dovecot.append(account, raw)
    ok(config, "run", "--once")
    assert len(dovecot.uids(account, "Junk")) == 2
    listed = json.loads(ok(config, "spam", "list", "--json"))
    [second] = [r for r in listed if "prize2@mail.test" in r["message_id"]]
    assert "moved=Junk->Processed" in ok(config, "spam", "release", str(second["id"]))
    assert len(dovecot.uids(account, "Junk")) == 1
    [moved] = dovecot.fetch_all(account, "Processed")
    assert b"Prize number 2" in moved
    [kept] = dovecot.fetch_all(account, "Junk")
    assert b"Prize number 1" in kept


def test_eicar_as_invoice_com_never_reaches_the_agent(desk) -> None:  # noqa: ANN001
    dovecot, account, config, sink = desk
    dovecot.append(account, mail(subject="Refund of my deposit", body="Invoice attached.",
                                 attachments=(("invoice.com", "application/octet-stream", EICAR),
                                              ("screenshot.png", "image/png", PNG))))
    ok(config, "run", "--once")
    ok(config, "deliver", "--once")
    sent = sink.handler.received
    [to_agent] = [r for r in sent if "anna@casino.test" in r.rcpt_tos]
    [to_player] = [r for r in sent if "player@mail.test" in r.rcpt_tos]
    for envelope in sent:
        flat = envelope.content.replace(b"\r\n", b"")
        assert EICAR not in envelope.content and base64.b64encode(EICAR)[:40] not in flat
    note = email.message_from_bytes(to_agent.content, policy=default)
    assert [p.get_filename() for p in note.iter_attachments()] == ["screenshot.png"]
    ack = email.message_from_bytes(to_player.content, policy=default)
    assert "invoice.com" in ack.get_body(("plain",)).get_content().split("did not accept")[1]
    assert "invoice.com" in ok(config, "events", "--kind", "attachment_refused")


def test_scan_check_says_whether_clamd_answers_and_finds_eicar(sqlite_url: str, tmp_path: Path,
                                                              clamd: ClamdServer) -> None:
    good = write_config(tmp_path / "good", sqlite_url, scan={"socket": str(clamd.socket_path)})
    assert "finds the EICAR test file" in ok(good, "scan", "check")
    tcp = write_config(tmp_path / "tcp", sqlite_url,
                       scan={"tcp_address": f"{clamd.address[0]}:{clamd.address[1]}"})
    assert f"{clamd.address[0]}:{clamd.address[1]}" in ok(tcp, "scan", "check")
    away = write_config(tmp_path / "away", sqlite_url, scan={"socket": str(tmp_path / "no.sock")})
    done = ticketd(away, "scan", "check")
    assert done.returncode == 1 and "no.sock" in done.stderr


def test_clamd_down_hold_keeps_the_mail_and_store_forwards_nothing_unscanned(
        dovecot, db_url: str, tmp_path: Path) -> None:  # noqa: ANN001
    sink = SmtpServer(Sink(), free_port()).start()
    account = dovecot.new_account()

    def configure(mode: str) -> Path:
        config = write_config(tmp_path, db_url, account,
                              smtp={"host": "127.0.0.1", "port": sink.port, "tls": "none"},
                              scan={"socket": str(tmp_path / "no-clamd.sock"),
                                    "on_unavailable": mode})
        config.write_text(config.read_text() + (
            '\n[[team.agents]]\naddress = "anna@casino.test"\nname = "Anna"\n'
            'groups = ["payments"]\n'))
        return config

    try:
        config = configure("hold")
        ok(config, "db", "upgrade")
        dovecot.append(account, mail(subject="Refund of my deposit", body="Receipt attached.",
                                     attachments=(("receipt.png", "image/png", PNG),)))
        dovecot.append(account, mail(sender="b@mail.test", subject="Bet settled wrongly"))
        ok(config, "run", "--once")
        assert len(dovecot.uids(account, "INBOX")) == 1  # the one with an attachment waits
        assert [t["subject"] for t in json.loads(ok(config, "tickets", "--json"))] == [
            "Bet settled wrongly"]
        ok(config, "run", "--once")  # clamd still away: still waiting, nothing doubled
        assert len(dovecot.uids(account, "INBOX")) == 1
        config = configure("store")
        ok(config, "run", "--once")
        assert dovecot.uids(account, "INBOX") == []
        ok(config, "deliver", "--once")
        notes = [email.message_from_bytes(r.content, policy=default)
                 for r in sink.handler.received if "anna@casino.test" in r.rcpt_tos]
        [refund] = [n for n in notes if "Refund of my deposit" in str(n["Subject"])]
        assert list(refund.iter_attachments()) == []  # nothing unscanned reaches an agent
        [unscanned] = ok(config, "events", "--kind", "attachments_unscanned").splitlines()
        assert "no-clamd.sock" in unscanned
    finally:
        sink.stop()


def test_spam_asking_for_exclusion_is_flagged_in_the_spam_list(desk) -> None:  # noqa: ANN001
    dovecot, account, config, _ = desk
    plea = delivered_by_our_mta(mail(sender="stranger@spam.test", subject="Help",
                                     body="Please self-exclude me, I have a gambling problem."),
                                ("X-Spam-Flag", "YES"))
    dovecot.append(account, plea)
    ok(config, "run", "--once")
    assert len(dovecot.uids(account, "Junk")) == 1  # a stranger's: kept as spam ...
    [listed] = json.loads(ok(config, "spam", "list", "--json"))
    assert listed["responsible_gambling"]  # ... but flagged
    assert "RG:" in ok(config, "spam", "list")


def test_an_agents_forward_that_does_not_authenticate_waits_in_quarantine(  # noqa: ANN001
        desk) -> None:
    """Not filed away as staff mail: it goes to the Quarantine folder, and Anna is told it
    was not accepted, in words of the desk's own."""
    dovecot, account, config, sink = desk
    body = ("FYI\n\n---------- Forwarded message ---------\nFrom: Petr <petr@players.test>\n"
            "Subject: Withdrawal missing\nTo: anna@casino.test\n\n"
            "My withdrawal is missing, see https://evil.example/x\n")
    dovecot.append(account, delivered_by_our_mta(mail(
        sender="Anna <anna@casino.test>", subject="Fwd: Withdrawal missing", body=body)))
    ok(config, "run", "--once")
    assert dovecot.uids(account, "INBOX") == [] and dovecot.uids(account, "Processed") == []
    assert len(dovecot.uids(account, "Quarantine")) == 1
    assert json.loads(ok(config, "tickets", "--json")) == []
    ok(config, "deliver", "--once")
    [notice] = [r for r in sink.handler.received if r.rcpt_tos == ("anna@casino.test",)]
    assert b"evil.example" not in notice.content and b"Withdrawal" not in notice.content
    text = email.message_from_bytes(notice.content, policy=default).get_body(
        ("plain",)).get_content()
    assert "was not accepted" in text and "quarantine" in text
    # A person checks it and releases it: the player's ticket, out of the quarantine folder.
    [held] = json.loads(ok(config, "quarantine", "list", "--json"))
    assert "forward from agent anna@casino.test not authenticated" in held["reason"]
    out = ok(config, "quarantine", "release", str(held["id"]))
    assert "outcome=ticket" in out and "moved=Quarantine->Processed" in out
    [ticket] = json.loads(ok(config, "tickets", "--json"))
    assert ticket["subject"] == "Withdrawal missing"
    assert dovecot.uids(account, "Quarantine") == []
    assert len(dovecot.uids(account, "Processed")) == 1
    assert json.loads(ok(config, "quarantine", "list", "--json")) == []
    assert ticketd(config, "quarantine", "release", str(held["id"])).returncode == 1
