"""What a bounce says: failed recipients, permanent or not, and which of our mails bounced."""

from __future__ import annotations

import time

import pytest

from parsers import parse
from parsers.bounce import Bounce, bounce_info, verp_address, verp_recipient
from parsers.model import InboundMail
from tests.support.mails import mail

OUR_ID = "t10001.abc@casino.example"

RETURNED = (
    "Return-Path: <bounces+player=mail.example@support.casino.example>\r\n"
    "From: Casino Support <support@casino.example>\r\n"
    "To: player@mail.example\r\n"
    "Subject: [#10001] Your withdrawal\r\n"
    f"Message-ID: <{OUR_ID}>\r\n"
    "Auto-Submitted: auto-replied\r\n"
)


def dsn(
    action: str = "failed",
    status: str = "5.1.1",
    *,
    returned: str | None = "message/rfc822",
    recipient_fields: str | None = None,
    per_message: str = "",
) -> InboundMail:
    """A Postfix-style DSN of our mail <t10001.abc@casino.example> to player@mail.example."""
    recipient_fields = recipient_fields or (
        "Final-Recipient: rfc822; player@mail.example\r\n"
        "Original-Recipient: rfc822;player@mail.example\r\n"
        f"Action: {action}\r\nStatus: {status}\r\nRemote-MTA: dns; mx.mail.example\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <player@mail.example>: User unknown\r\n"
    )
    returned_part = (
        f"--b\r\nContent-Type: {returned}\r\n\r\n{RETURNED}\r\nYour withdrawal is on its way.\r\n"
        if returned
        else ""
    )
    raw = (
        "Return-Path: <>\r\n"
        "From: MAILER-DAEMON@mx.casino.example (Mail Delivery System)\r\n"
        "To: bounces+player=mail.example@support.casino.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "Message-ID: <20261120.ABC@mx.casino.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\n"
        "This is the mail system at host mx.casino.example.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.casino.example\r\n{per_message}\r\n"
        f"{recipient_fields}\r\n"
        f"{returned_part}--b--\r\n"
    )
    return parse(raw.encode())


# --- a bounce of a mail we sent ------------------------------------------------------


def test_a_5_1_1_dsn_of_our_mail_is_permanent_with_its_recipient_and_message_id():
    assert bounce_info(dsn("failed", "5.1.1")) == Bounce(
        recipients=("player@mail.example",),
        permanent=True,
        original_message_id=OUR_ID,
        status="5.1.1",
    )


def test_a_4_2_2_delay_of_our_mail_is_temporary_with_its_recipient_and_message_id():
    assert bounce_info(dsn("delayed", "4.2.2")) == Bounce(
        recipients=("player@mail.example",),
        permanent=False,
        original_message_id=OUR_ID,
        status="4.2.2",
    )


def test_returned_headers_only_still_give_the_message_id():
    found = bounce_info(dsn(returned="text/rfc822-headers"))
    assert found is not None and found.original_message_id == OUR_ID


def test_an_original_message_id_field_gives_the_message_id_without_a_returned_part():
    found = bounce_info(dsn(returned=None, per_message=f"Original-Message-ID: <{OUR_ID}>\r\n"))
    assert found is not None and found.original_message_id == OUR_ID


def test_without_any_trace_of_the_original_the_message_id_is_none():
    found = bounce_info(dsn(returned=None))
    assert found is not None
    assert found.original_message_id is None
    assert found.recipients == ("player@mail.example",)


def test_original_recipient_is_preferred_to_the_final_recipient():
    # After alias expansion the Final-Recipient is not what we sent to.
    found = bounce_info(dsn(recipient_fields=(
        "Original-Recipient: rfc822; Player@Mail.example\r\n"
        "Final-Recipient: rfc822; mailbox17@store.mail.example\r\n"
        "Action: failed\r\nStatus: 5.2.1\r\n"
    )))
    assert found is not None and found.recipients == ("player@mail.example",)


def test_several_recipients_keep_only_the_failed_ones_when_some_failed():
    found = bounce_info(dsn(recipient_fields=(
        "Final-Recipient: rfc822; one@mail.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n"
        "Final-Recipient: rfc822; two@mail.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "Final-Recipient: rfc822; three@mail.example\r\nAction: failed\r\nStatus: 5.2.2\r\n"
    )))
    assert found is not None
    assert found.recipients == ("two@mail.example", "three@mail.example")
    assert found.permanent
    assert found.status == "5.1.1"


def test_recipient_groups_without_blank_lines_are_still_told_apart():
    found = bounce_info(dsn(recipient_fields=(
        "Final-Recipient: rfc822; one@mail.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Final-Recipient: rfc822; two@mail.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    )))
    assert found is not None and found.recipients == ("one@mail.example", "two@mail.example")


def test_without_an_action_the_status_class_decides():
    fields = "Final-Recipient: rfc822; player@mail.example\r\nStatus: {}\r\n"
    permanent = bounce_info(dsn(recipient_fields=fields.format("5.7.1")))
    temporary = bounce_info(dsn(recipient_fields=fields.format("4.2.2")))
    assert permanent is not None and permanent.permanent
    assert temporary is not None and not temporary.permanent


def test_a_success_dsn_reports_no_failure():
    assert bounce_info(dsn("delivered", "2.0.0")) is None


def test_a_players_mail_is_no_bounce():
    assert bounce_info(parse(mail(subject="my refund was not delivered"))) is None


def test_an_auto_reply_is_no_bounce():
    assert bounce_info(parse(mail(headers={"Auto-Submitted": "auto-replied"}))) is None


# --- bounces without a delivery-status part ----------------------------------------------


def plain_bounce(sender: str, subject: str, body: str, headers: str = "") -> InboundMail:
    raw = (
        f"Return-Path: <>\r\nFrom: {sender}\r\nTo: support@casino.example\r\n"
        f"Subject: {subject}\r\n{headers}MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain\r\n\r\n{body}"
    )
    return parse(raw.encode())


def test_exim_x_failed_recipients_and_the_inline_returned_message():
    exim = plain_bounce(
        "Mail Delivery System <Mailer-Daemon@mx.mail.example>",
        "Mail delivery failed: returning message to sender",
        "This message was created automatically by mail delivery software.\r\n\r\n"
        "A message that you sent could not be delivered to one or more of its\r\n"
        "recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
        "  player@mail.example\r\n    SMTP error from remote mail server after RCPT TO:\r\n"
        "    550 5.1.1 User unknown\r\n\r\n"
        "------ This is a copy of the message, including all the headers. ------\r\n\r\n"
        f"{RETURNED}\r\nYour withdrawal is on its way.\r\n",
        headers="X-Failed-Recipients: player@mail.example\r\n",
    )
    assert bounce_info(exim) == Bounce(("player@mail.example",), True, OUR_ID, "5.1.1")


def test_qmail_failure_notice():
    qmail = plain_bounce(
        "MAILER-DAEMON@mx.mail.example",
        "failure notice",
        "Hi. This is the qmail-send program at mx.mail.example.\r\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
        "<player@mail.example>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
        "--- Below this line is a copy of the message.\r\n\r\n"
        f"{RETURNED}\r\nYour withdrawal is on its way.\r\n",
    )
    assert bounce_info(qmail) == Bounce(("player@mail.example",), True, OUR_ID, "5.1.1")


def test_sendmail_names_the_address_we_sent_to_not_its_expansion():
    sendmail = plain_bounce(
        "Mail Delivery Subsystem <MAILER-DAEMON@mx.mail.example>",
        "Returned mail: see transcript for details",
        "   ----- The following addresses had permanent fatal errors -----\r\n"
        "player.smith@store.mail.example\r\n    (expanded from: player@mail.example)\r\n\r\n"
        "   ----- Transcript of session follows -----\r\n"
        "550 5.1.1 player.smith@store.mail.example... User unknown\r\n",
    )
    found = bounce_info(sendmail)
    assert found is not None and found.recipients == ("player@mail.example",)


def test_a_plain_delay_warning_is_temporary():
    warning = plain_bounce(
        "Mail Delivery Subsystem <MAILER-DAEMON@mx.mail.example>",
        "Warning: could not send message for past 4 hours",
        "    **********************************************\r\n"
        "    **      THIS IS A WARNING MESSAGE ONLY      **\r\n"
        "    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **\r\n"
        "    **********************************************\r\n\r\n"
        "The original message was received at Fri, 20 Nov 2026 12:00:00 GMT\r\n\r\n"
        "   ----- Transcript of session follows -----\r\n"
        "<player@mail.example>... Deferred: Connection timed out\r\n"
        "Warning: message still undelivered after 4 hours\r\n"
        "Will keep trying until message is 5 days old\r\n",
    )
    found = bounce_info(warning)
    assert found is not None and not found.permanent


def test_addresses_of_the_parties_and_mail_systems_are_not_failed_recipients():
    postfix = plain_bounce(
        "MAILER-DAEMON@mx.mail.example (Mail Delivery System)",
        "Undelivered Mail Returned to Sender",
        "This is the mail system at host mx.mail.example.\r\n\r\n"
        "For further assistance, please send mail to postmaster@mx.mail.example\r\n\r\n"
        "<player@mail.example>: host mx.mail.example said: 550 5.1.1 unknown user\r\n"
        "    (in reply to RCPT TO command) from support@casino.example\r\n",
    )
    found = bounce_info(postfix)
    assert found is not None and found.recipients == ("player@mail.example",)


def test_a_bounce_naming_nobody_still_is_a_bounce_with_no_recipients():
    vague = plain_bounce("MAILER-DAEMON@mx.mail.example", "failure notice", "It did not work.\r\n")
    assert bounce_info(vague) == Bounce((), True, None, None)


# --- VERP --------------------------------------------------------------------------------


def test_verp_address_names_the_recipient():
    assert verp_address("bounces", "player@mail.example", "support.casino.example") == (
        "bounces+player=mail.example@support.casino.example"
    )


@pytest.mark.parametrize(
    "recipient", ["player@mail.example", "first.last+tag@mail.example", "a=b@mail.example"]
)
def test_verp_round_trips(recipient):
    assert verp_recipient(verp_address("bounces", recipient, "support.casino.example")) == recipient


def test_verp_recipient_takes_a_local_part_or_a_whole_address():
    assert verp_recipient("bounces+player=mail.example") == "player@mail.example"
    assert verp_recipient("Bounces+Player=Mail.Example@support.casino.example") == (
        "player@mail.example"
    )


def test_verp_recipient_with_another_prefix():
    assert verp_recipient("desk-bounce+player=mail.example", prefix="desk-bounce") == (
        "player@mail.example"
    )
    assert verp_recipient("desk-bounce+player=mail.example") is None


@pytest.mark.parametrize(
    "local",
    ["bounces", "bounces+", "bounces+player", "bounces+=mail.example", "bounces+player=",
     "support", "player+bounces=mail.example", "bounces+player=localhost"],
)
def test_what_is_not_a_verp_address_gives_none(local):
    assert verp_recipient(local) is None


def test_verp_address_refuses_what_is_not_an_address():
    with pytest.raises(ValueError):
        verp_address("bounces", "player", "support.casino.example")


# --- cost ------------------------------------------------------------------------------------

MB = 1024 * 1024


@pytest.mark.parametrize(
    "body",
    ["a" * MB, "a@" * (MB // 2), "-" * MB, " " * MB + "x", "Status:" + " " * MB,
     ("x" * 60 + "@" + "a." * 30 + "\r\n") * (MB // 122), "\r\n" * (MB // 2),
     ("delivery failed: " + "b" * 70 + "@mail.example\r\n") * (MB // 100)],
    ids=["letters", "at-signs", "dashes", "spaces", "status", "long-domains", "newlines", "many"],
)
def test_a_megabyte_bounce_body_is_read_in_well_under_a_second(body):
    big = plain_bounce("MAILER-DAEMON@mx.mail.example", "failure notice", body)
    started = time.perf_counter()
    bounce_info(big)
    assert time.perf_counter() - started < 0.5


def test_a_megabyte_delivery_status_part_is_read_in_well_under_a_second():
    fields = "Final-Recipient: rfc822; player@mail.example\r\n" + " x\r\n" * (MB // 4)
    started_parse = dsn(recipient_fields=fields)
    started = time.perf_counter()
    bounce_info(started_parse)
    assert time.perf_counter() - started < 0.5
