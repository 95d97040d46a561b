"""Every mail of the third-party corpus parses or is cleanly rejected; Zammad's expectations hold.

The corpus lives beside the repository (../shared/corpus, see its README.md).
These tests skip when it is absent, except under CI=true, where that is a failure.

Walked: discourse, flufl-bounce, ruby-mail-gem, sisimai-set-of-emails (maildir
and to-be-debugged files, and the two mbox files split into their messages,
although mbox-0 repeats maildir/err), spamscope-mail-parser and zammad/mail.
Not walked: talon and email-reply-parser-zapier (bodies and HTML fragments,
not mails) and zammad/email_signature_detection (bodies).
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
from pathlib import Path

import pytest

from parsers import InboundMail, RejectedMail, parse

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"

MESSAGE_GLOBS = (
    "discourse/emails/*.eml",
    "flufl-bounce/data/*.txt",
    "ruby-mail-gem/**/*.eml",
    "sisimai-set-of-emails/maildir/**/*.eml",
    "sisimai-set-of-emails/to-be-debugged-because/**/*.eml",
    "spamscope-mail-parser/mails/*",
    "zammad/mail/*.box",
)
MBOXES = ("sisimai-set-of-emails/mailbox/mbox-0", "sisimai-set-of-emails/mailbox/mbox-1")
# The only expected refusal: an Outlook .msg file (OLE2 binary), not RFC 5322.
EXPECTED_REJECTIONS = {"spamscope-mail-parser/mails/mail_outlook_1": "not an RFC 5322 message"}


def require_corpus() -> None:
    if CORPUS.is_dir():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the mail corpus is missing: {CORPUS}")
    pytest.skip("the mail corpus (../shared/corpus) is not present")


def corpus_messages() -> dict[str, bytes]:
    if not CORPUS.is_dir():
        return {}
    found = {}
    for pattern in MESSAGE_GLOBS:
        for path in sorted(CORPUS.glob(pattern)):
            if path.is_file():
                found[path.relative_to(CORPUS).as_posix()] = path.read_bytes()
    for mbox in MBOXES:
        for number, message in enumerate(split_mbox((CORPUS / mbox).read_bytes()), 1):
            found[f"{mbox}#{number}"] = message
    return found


def split_mbox(data: bytes) -> list[bytes]:
    starts = [m.start() for m in re.finditer(rb"(?m)^From ", data)]
    return [data[a:b] for a, b in zip(starts, starts[1:] + [len(data)], strict=True)]


MESSAGES = corpus_messages()


def test_corpus_is_present():
    require_corpus()
    assert len(MESSAGES) > 1000


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_every_corpus_mail_parses_or_is_rejected_as_expected(name):
    try:
        mail = parse(MESSAGES[name])
    except RejectedMail as rejected:
        assert EXPECTED_REJECTIONS.get(name) == rejected.reason
    else:
        assert name not in EXPECTED_REJECTIONS
        assert isinstance(mail, InboundMail)


def test_line_endings_do_not_change_any_corpus_result():
    require_corpus()
    for name, raw in MESSAGES.items():
        lf = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        results = {
            _outcome(variant)
            for variant in (lf, lf.replace(b"\n", b"\r\n"), lf.replace(b"\n", b"\r"))
        }
        assert len(results) == 1, name


def _outcome(raw: bytes) -> InboundMail | str:
    try:
        return dataclasses.replace(parse(raw), raw_size=0)
    except RejectedMail as rejected:
        return rejected.reason


def test_spamscope_facts():
    """The facts spamscope-mail-parser/SOURCE.md quotes from mail-parser's own tests."""
    require_corpus()
    folder = "spamscope-mail-parser/mails/"
    bulletin = parse(MESSAGES[folder + "mail_test_2"])
    assert bulletin.defects == ()
    assert bulletin.sender.addr == "meteo@regione.vda.it"
    assert [a.addr for a in bulletin.to][:1] == ["echo@tu-berlin.de"] and len(bulletin.to) == 2
    assert bulletin.subject == "Bollettino Meteorologico del 29/11/2015"
    assert bulletin.message_id == "4516257BC5774408ADC1263EEBBBB73F@ad.regione.vda.it"
    assert bulletin.date.isoformat() == "2015-11-29T08:45:18+00:00"
    assert len(bulletin.attachments) == 3
    for name in ("mail_malformed_1", "mail_malformed_2"):
        assert parse(MESSAGES[folder + name]).defects == ("StartBoundaryNotFoundDefect",)
    # The zip after the reused boundary, recovered from the epilogue as mail-parser does.
    assert len(parse(MESSAGES[folder + "mail_malformed_1"]).attachments) == 1
    spam = parse(MESSAGES[folder + "mail_malformed_3"])
    assert {"StartBoundaryNotFoundDefect", "MultipartInvariantViolationDefect"} <= set(spam.defects)
    assert [(a.name, a.addr) for a in spam.reply_to] == [
        ("VICTORIA Souvenirs", "smgesi4@gmail.com")
    ]
    assert spam.header("x-msmail-priority") == "High"
    assert len(parse(MESSAGES[folder + "mail_test_5"]).attachments) == 5
    # mail_malformed_2 has 2 attachments here, 1 for mail-parser: we count the
    # message/delivery-status part as a file, mail-parser does not.


# ---------------------------------------------------------------- Zammad

ZAMMAD = CORPUS / "zammad" / "mail"
GENERATED_NAME = re.compile(r"attachment-\d+\.\w+")

# Cases where Zammad's expectation and ours differ on purpose: (file, field) -> why,
# with the check that replaces the comparison where there is one.
KNOWN = {
    (
        "mail016.yml",
        "sender",
    ): "no From header: Zammad falls back to Reply-To, our sender is From only",
    (
        "mail019.yml",
        "sender",
    ): "From is '<>': Zammad falls back to Reply-To, our sender is From only",
    (
        "mail076.yml",
        "sender",
    ): "From '\"...\"@example.com>': Zammad keeps the stray '>' in the address",
    (
        "mail087.yml",
        "sender",
    ): "From 'Test test@example.com': Zammad keeps the space, we take the addr-spec",
    (
        "mail018.yml",
        "subject",
    ): "a unicode-1-1-utf-7 word Zammad leaves encoded (+ANw-); we decode it",
    (
        "mail062.yml",
        "attachments",
    ): "two text/html parts after the body: Zammad makes them files, we join them to the HTML",
    (
        "mail073.yml",
        "attachments",
    ): "raw ISO-8859-1 'ö' in a filename: Zammad shows U+FFFD, we decode it",
    (
        "mail087.yml",
        "attachments",
    ): "a text/plain part after the PDF: Zammad makes it a file 'file', we join it to the text",
    (
        "mail102.yml",
        "attachments",
    ): "two screenshots with one name: Zammad renames the second, we keep the sender's names",
}


def zammad_expectations() -> list[str]:
    return sorted(p.name for p in ZAMMAD.glob("*.yml")) if ZAMMAD.is_dir() else []


def load_yaml(path: Path) -> dict:
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        """Ruby-tagged YAML: every tag is read as its plain node; !binary as bytes."""

    def untagged(loader, suffix, node):
        if suffix == "binary":
            return base64.b64decode(loader.construct_scalar(node))
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    Loader.add_multi_constructor("!", untagged)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 - safe subclass


@pytest.mark.parametrize("name", zammad_expectations())
def test_zammad_expectations(name):
    expected = load_yaml(ZAMMAD / name)
    mail = parse(ZAMMAD.joinpath(name).with_suffix(".box").read_bytes())
    checks = {"sender": _check_sender, "subject": _check_subject, "attachments": _check_attachments}
    for field, check in checks.items():
        if (name, field) not in KNOWN:
            check(mail, expected)
    _check_known(name, mail, expected)


def _check_sender(mail: InboundMail, expected: dict) -> None:
    if expected.get("from_email"):
        # Addresses are lower-cased by contract; Zammad keeps the sender's case.
        assert mail.sender is not None
        assert mail.sender.addr == expected["from_email"].lower()


def _check_subject(mail: InboundMail, expected: dict) -> None:
    if "subject" in expected:
        # Our subject is one line with folding turned into spaces; Zammad keeps the
        # tabs and trailing spaces of folding. Whitespace runs compare as one space.
        assert _words(mail.subject) == _words(expected["subject"] or "")


def _words(text: str) -> str:
    return " ".join(text.split())


def _check_attachments(mail: InboundMail, expected: dict) -> None:
    if "attachments" not in expected:  # the fixture does not assert attachments
        return
    wanted = [_expected_file(a) for a in expected["attachments"] if not _is_zammad_html_copy(a)]
    got = [(a.filename, _comparable_size(a.content_type, a.payload)) for a in mail.attachments]
    assert len(got) == len(wanted), (got, wanted)
    for (name, size), (want_name, want_size) in zip(got, wanted, strict=True):
        assert size == want_size, name
        # Zammad invents names for parts that have none ("image.jpg", "file"); ours are generated.
        assert name == want_name or GENERATED_NAME.fullmatch(name), (name, want_name)


def _is_zammad_html_copy(attachment: dict) -> bool:
    # Zammad stores the HTML body again as "message.html"; we keep it in InboundMail.html.
    return bool((attachment.get("preferences") or {}).get("original-format"))


def _expected_file(attachment: dict) -> tuple[str, int]:
    data = attachment.get("data") or b""
    data = data if isinstance(data, bytes) else data.encode("utf-8")
    content_type = (attachment.get("preferences") or {}).get("Mime-Type", "")
    return attachment["filename"], _comparable_size(content_type, data)


def _comparable_size(content_type: str, payload: bytes) -> int:
    # A message/* part is written back with CRLF (its canonical form); Zammad
    # keeps the line endings of its source file.
    if content_type.startswith("message/"):
        return len(payload.replace(b"\r\n", b"\n"))
    return len(payload)


def _check_known(name: str, mail: InboundMail, expected: dict) -> None:
    """What holds instead where we differ from Zammad on purpose."""
    if name in ("mail016.yml", "mail019.yml"):
        assert mail.sender is None
        assert expected["from_email"] in [a.addr for a in mail.reply_to]
    elif name == "mail076.yml":
        assert mail.sender.addr == expected["from_email"].lower().rstrip(">")
    elif name == "mail087.yml":
        assert mail.sender.addr == expected["from_email"].split()[-1]
        assert "Sehr geehrter Kunde" in mail.text
    elif name == "mail018.yml":
        assert _words(mail.subject) == _words(expected["subject"].replace("+ANw-", "Ü"))
    elif name == "mail062.yml":
        assert "some html 2" in mail.html
    elif name == "mail073.yml":
        assert "Forex Platte ohne Wölbung.jpg" in [a.filename for a in mail.attachments]
    elif name == "mail102.yml":
        names = [a.filename for a in mail.attachments]
        assert names.count("Screen Shot 2018-12-17 at 09.00.38.png") == 2


def test_known_disagreements_name_real_expectation_files():
    require_corpus()
    assert {name for name, _ in KNOWN} <= set(zammad_expectations())
