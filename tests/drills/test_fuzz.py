"""A short, deterministic hypothesis run over the parsers' entry points.

``parse`` may only ever raise ``RejectedMail``; everything that reads a
parsed mail or a piece of text raises nothing at all. ``derandomize=True``
makes every run (and CI) see the same examples; no example database is kept.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import InboundMail, Limits, RejectedMail, parse
from parsers.authres import parse_authentication_results
from parsers.automated import automated_reason
from parsers.commands import parse_commands
from parsers.forward import forwarded_original
from parsers.reply import visible_text

FUZZ = settings(
    max_examples=200, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LIMITS = Limits()
pytestmark = pytest.mark.timeout(120)


def _seed(subject: str, body: str, *, html: str | None = None, attach: bool = False,
          forward: bool = False, headers: dict[str, str] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Игрок <player@mail.test>"
    msg["To"] = "support@localhost"
    msg["Subject"] = subject
    msg["Date"] = "Fri, 20 Nov 2026 12:00:00 +0000"
    msg["Message-ID"] = "<seed@mail.test>"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if html:
        msg.add_alternative(html, subtype="html")
    if attach:
        msg.add_attachment(b"\x89PNG\r\n\x1a\n" + bytes(40), maintype="image", subtype="png",
                           filename="screen.png")
    if forward:
        inner = EmailMessage()
        inner["From"] = "Original <orig@player.test>"
        inner["Subject"] = "Where is my money"
        inner.set_content("I deposited 100 EUR and it is gone.")
        msg.add_attachment(inner)
    return msg.as_bytes(policy=SMTP)


SEEDS = (
    _seed("Refund request", "Hello, please refund my deposit of 100 EUR."),
    _seed("Re: [#12] Вывод средств", "Спасибо!\n\nOn Mon, support wrote:\n> old text\n",
          html="<p>Спасибо!</p><blockquote>old</blockquote>",
          headers={"In-Reply-To": "<t12.abc@casino.test>", "Auto-Submitted": "no"}),
    _seed("Fwd: complaint", "see below", attach=True, forward=True,
          headers={"Authentication-Results": "mx.test; dkim=pass header.d=mail.test; spf=pass"}),
    _seed("Out of office", "I am away.", headers={"Auto-Submitted": "auto-replied",
                                                    "Precedence": "bulk"}),
)


@st.composite
def mutated_mail(draw: st.DrawFn) -> bytes:
    """A seed mail with a few byte-level edits: overwrite, insert, delete, splice, truncate."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["overwrite", "insert", "delete", "duplicate", "truncate"]))
        chunk = draw(st.binary(min_size=1, max_size=16) | st.sampled_from(
            [b"\r\n", b"\n\n", b"--", b"=?utf-8?b?", b"?=", b"\x00", b"\xff\xfe", b"=\r\n",
             b"Content-Type: multipart/mixed; boundary=x\r\n", b"charset=\"\x00\"", b"<div>"]))
        if op == "overwrite":
            data[at:at + len(chunk)] = chunk
        elif op == "insert":
            data[at:at] = chunk
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif op == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 200))]
        else:
            del data[at:]
    return bytes(data)


def _parsed_or_none(raw: bytes) -> InboundMail | None:
    try:
        return parse(raw, LIMITS)
    except RejectedMail as rejected:
        assert rejected.reason
        return None


def _check_readers(mail: InboundMail | None) -> None:
    if mail is None:
        return
    automated_reason(mail, frozenset({"support@localhost"}), "x-ticketd-loop")
    forwarded_original(mail)
    visible_text(mail.text, mail.html)


@FUZZ
@given(st.binary(max_size=4096))
def test_parse_of_arbitrary_bytes_raises_only_rejected_mail(raw: bytes) -> None:
    _check_readers(_parsed_or_none(raw))


@FUZZ
@given(mutated_mail())
def test_parse_of_mutated_real_mails_raises_only_rejected_mail(raw: bytes) -> None:
    _check_readers(_parsed_or_none(raw))


@FUZZ
@given(st.text(max_size=2000), st.none() | st.text(max_size=2000))
def test_visible_text_of_arbitrary_text(text: str, html: str | None) -> None:
    assert isinstance(visible_text(text, html), str)


_HTMLISH = st.lists(st.sampled_from(["<div>", "</div>", "<blockquote>", "</blockquote>", "<br>",
                                     "<p class=gmail_quote>", "<", ">", "&amp;", "text", "\n",
                                     "<!--", "-->", "On Mon, a wrote:", "> quoted"]),
                    max_size=200).map("".join)


@FUZZ
@given(_HTMLISH, _HTMLISH)
def test_visible_text_of_html_like_text(text: str, html: str) -> None:
    assert isinstance(visible_text(text, html), str)


_AUTHRES = st.lists(st.sampled_from(["mx.test", ";", " ", "dkim", "=", "pass", "fail", "(", ")",
                                     '"', "header.d", ".", "smtp.mailfrom", "/1", "none", "\\",
                                     "@", "spf", "dmarc", "\r\n"]), max_size=40).map("".join)


@FUZZ
@given(st.text(max_size=500) | _AUTHRES)
def test_parse_authentication_results_never_raises(value: str) -> None:
    authserv_id, results = parse_authentication_results(value)
    assert isinstance(authserv_id, str) and isinstance(results, list)


_COMMANDS = st.lists(st.sampled_from(["#", "close", "category", "priority", "assign", " ", "\n",
                                      "\r\n", "refund", "high", "@", "agent@x.test", "#status",
                                      ":", "\x00", "…"]), max_size=60).map("".join)


@FUZZ
@given(st.text(max_size=1000) | _COMMANDS, st.none() | st.frozensets(st.text(max_size=10)))
def test_parse_commands_never_raises(text: str, categories: frozenset[str] | None) -> None:
    parse_commands(text, categories)


@FUZZ
@given(mutated_mail())
def test_mutated_real_mails_never_reach_the_safety_net(raw: bytes) -> None:
    try:
        parse(raw, LIMITS)
    except RejectedMail as rejected:
        assert not rejected.reason.startswith("unparseable"), (rejected.reason, raw[:300])
