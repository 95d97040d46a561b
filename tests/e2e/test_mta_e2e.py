"""The desk behind a real MTA, as people use it: players and staff write with mutt, Postfix
carries every mail, OpenDKIM signs the casino's outgoing mail and verifies what comes in, and
everyone reads what Dovecot delivered to their own mailbox.

player complaint with an attachment → ticket; acknowledgement in the player's mailbox,
notification in the agent's → the agent answers with mutt (DKIM-signed, verified on the way
in: the Authentication-Results ticketd trusts come from OpenDKIM) → the player gets the answer
from the support address → an unsigned forgery of the agent is held → the player follows up
→ an SLA breach escalates to the team lead → the lead answers `#assign me` → the lead holds
the ticket.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.support.configs import write_config
from tests.support.dovecot import require_dovecot
from tests.support.mta import MailSystem, Mutt, require_mta

pytestmark = [pytest.mark.dovecot, pytest.mark.mta]

AUTHSERV = "mx.casino.test"  # OpenDKIM's AuthservID and ticketd's [security] authserv_id
SUPPORT = "support@casino.test"
PLAYER = "player@mail.test"
AGENT = "anna@casino.test"
LEAD = "lead@casino.test"
# The resolution clock is short enough to run out while the test waits: it runs from the
# complaint, pauses while the ticket waits on the player, and resumes at the follow-up.
RESOLUTION = "20s"
TAG = re.compile(r"\[#(\d+)\]")
SECRET = "mta-e2e-secret-0123456789abcdef"
ENV = {**os.environ, "TICKETD_SECURITY__SECRET": SECRET}


@pytest.fixture(scope="module")
def mail_system(request: pytest.FixtureRequest) -> Iterator[MailSystem]:
    """Postfix, OpenDKIM and Dovecot for this module; their logs are kept when a test failed."""
    tools = require_mta()
    system = MailSystem(tools, require_dovecot(), domains=["casino.test", "mail.test"],
                        signed_domains=["casino.test"], authserv_id=AUTHSERV)
    try:
        system.start()
        yield system
    finally:
        system.stop()
    if not request.session.testsfailed:
        system.remove_directory()


def ticketd(config: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), *args],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 0, f"ticketd {' '.join(args)}: {done.stderr}"
    return done.stdout


def show(config: Path, number: int) -> dict[str, Any]:
    return json.loads(ticketd(config, "show", str(number), "--json"))


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None, f"no text part in {message['Subject']}"
    return str(part.get_content())


def quoted(message: EmailMessage, text: str, who: str = "Casino Support") -> str:
    """A reply as mutt writes one: the new text, then the whole message quoted."""
    lines = "\n".join("> " + line for line in body(message).splitlines())
    return f"{text}\n\nOn {message['Date']}, {who} wrote:\n{lines}\n"


def reply(mutt: Mutt, to: EmailMessage, text: str, *, who: str = "Casino Support") -> None:
    recipient = to["Reply-To"] or to["From"]
    mutt.send(str(recipient.addresses[0].addr_spec), f"Re: {to['Subject']}",
              quoted(to, text, who), in_reply_to=str(to["Message-ID"]),
              references=" ".join(filter(None, [to["References"], str(to["Message-ID"])])))


def wait_until(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert result, f"{what}: not within {seconds} s"
    return result


def test_a_ticket_through_postfix_opendkim_and_mutt(mail_system: MailSystem, sqlite_url: str,
                                                    tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    system = mail_system
    support, player, agent, lead = (system.mailbox(a) for a in (SUPPORT, PLAYER, AGENT, LEAD))
    assert system.postfix is not None
    config = write_config(
        tmp_path, sqlite_url, support,
        smtp={"host": "127.0.0.1", "port": system.postfix.submission_port, "tls": "none"},
        outbox={"interval": "1s"}, security={"authserv_id": AUTHSERV},
        # Short clocks, so that the daemon's own monitor escalates while the test watches.
        sla={"team_lead_address": LEAD, "resolution": RESOLUTION, "interval": "1s"})
    config.write_text(config.read_text() + (
        f'\n[[team.agents]]\naddress = "{AGENT}"\nname = "Anna Smirnova"\n'
        'groups = ["payments"]\n'))
    ticketd(config, "db", "upgrade")
    players_mutt = system.mutt(PLAYER, "Pat Player", submission=False)
    agents_mutt = system.mutt(AGENT, "Anna Smirnova", submission=True)
    forgers_mutt = system.mutt(AGENT, "Anna Smirnova", submission=False)  # no signature
    leads_mutt = system.mutt(LEAD, "Lena Lead", submission=True)
    receipt = tmp_path / "receipt.pdf"
    receipt.write_bytes(b"%PDF-1.4\n% deposit receipt 100 EUR\n%%EOF\n")

    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config), "run"],
                              stdout=log, stderr=subprocess.STDOUT, env=ENV)
    try:
        # The complaint, with its attachment, from the player's own client.
        players_mutt.send(SUPPORT, "Refund of my deposit",
                          "Please refund my deposit of 100 EUR. The receipt is attached.\n",
                          attachments=[receipt])
        ack = system.wait_for_mail(player, lambda m: True, "the acknowledgement")
        note = system.wait_for_mail(agent, lambda m: "100 EUR" in body(m), "the notification")
        number = int(TAG.search(str(ack["Subject"])).group(1))  # type: ignore[union-attr]
        assert f"#{number}" in str(note["Subject"])
        assert ack["From"].addresses[0].addr_spec == SUPPORT

        # The agent answers from mutt through the casino's submission port: OpenDKIM signs,
        # the MX's OpenDKIM verifies and writes the header ticketd trusts.
        answer = "Hello! Your deposit of 100 EUR was refunded today."
        reply(agents_mutt, note, answer)
        complaint = show(config, number)["messages"][0]
        assert complaint["from"] == PLAYER
        assert [a["filename"] for a in complaint["attachments"]] == ["receipt.pdf"]
        relayed = system.wait_for_mail(player, lambda m: answer in body(m), "the answer")
        assert "Please refund my deposit" not in body(relayed)
        assert relayed["From"].addresses[0].addr_spec == SUPPORT
        assert relayed["In-Reply-To"] == f"<{complaint['message_id']}>"
        assert AGENT not in relayed.as_string()
        # ticketd's own mail left through the submission port: signed for casino.test too.
        assert "dkim=pass" in str(relayed["Authentication-Results"])
        signed = wait_until(lambda: next((m for m in system.messages(support, "Processed")
                                          if m["From"].addresses[0].addr_spec == AGENT), None),
                            30, "the agent's mail filed as processed")
        topmost = str(signed.get_all("Authentication-Results")[0])
        assert topmost.startswith(f"{AUTHSERV};") and "dkim=pass" in topmost
        assert "header.d=casino.test" in topmost and signed["DKIM-Signature"] is not None

        # A forgery of the agent, straight to the MX without a signature, is held and the
        # real agent is told; nothing of it goes to the player.
        forged = "Your refund is cancelled; send your card number to win it back."
        reply(forgers_mutt, note, forged)
        notice = system.wait_for_mail(agent, lambda m: "held" in str(m["Subject"]),
                                      "the held notice")
        assert notice["From"].addresses[0].addr_spec == SUPPORT
        assert "not authenticated" in body(notice) and forged not in body(notice)
        held = [m for m in show(config, number)["messages"] if forged in (m["text"] or "")]
        assert [(m["kind"], m["visibility"]) for m in held] == [("held", "internal")]

        # The player follows up on the answer and nobody resolves the ticket in time: the
        # daemon's own SLA monitor finds the resolution clock breached and tells the lead.
        reply(players_mutt, relayed, "The money has not arrived yet.")
        system.wait_for_mail(agent, lambda m: "has not arrived yet" in body(m),
                             "the follow-up's notification")
        escalation = system.wait_for_mail(lead, lambda m: True, "the escalation", timeout=45)
        assert f"#{number}" in str(escalation["Subject"]) and "#assign me" in body(escalation)

        # The lead takes the ticket by answering the escalation from mutt.
        reply(leads_mutt, escalation, "#assign me")
        wait_until(lambda: any(m["From"].addresses[0].addr_spec == LEAD
                               for m in system.messages(support, "Processed")),
                   30, "the lead's answer ingested")
        assert not any(forged in body(m) for m in system.messages(player))
        ticket = show(config, number)
        assert ticket.get("assignee") == LEAD, (
            f"the lead's #assign me did not assign #{number}: "
            f"{[(m['from'], m['kind']) for m in ticket['messages']]}")

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        request.node.add_report_section(  # shown when the test fails, with where the logs are
            "call", "ticketd and the mail system",
            f"{system.describe()}\n" + (tmp_path / "daemon.log").read_text()[-6000:])
