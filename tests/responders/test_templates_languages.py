"""Every template in every language: it exists, renders every branch with no undefined
variable, and no sentence of the English templates shows through a translation."""

from __future__ import annotations

import email
import html
import re
from datetime import UTC, datetime, timedelta
from email.policy import default
from importlib import resources
from itertools import product
from typing import Any

import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from parsers.model import Address
from parsers.reply import REPLY_MARKER_BY_LANGUAGE, reply_marker
from responders.agents import RelayContext, relay
from responders.compose import AckContext, acknowledgement
from responders.identity import Identity
from responders.loops import Over, loop_summary
from responders.rendering import Templates
from responders.wording import human_size, localized_duration

TEMPLATES = resources.files("responders") / "templates"
LANGUAGES = ("en", "ru", "uk", "kk", "uz", "az", "tr", "de", "es", "pt")
ENGLISH_NAMES = sorted(p.name for p in (TEMPLATES / "en").iterdir() if p.name.endswith(".j2"))


def _environment() -> Environment:
    # The policy the desk renders with: an undefined variable is an error, not a blank.
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined,
                       autoescape=lambda name: bool(name and name.endswith(".html.j2")),
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _contexts(language: str) -> list[dict[str, Any]]:
    """Enough contexts to take every branch of every template once."""
    base: dict[str, Any] = {
        "tag": "[#1042]", "ticket_number": 1042, "requester_name": "Aliya Nurlanova",
        "first_response": localized_duration(timedelta(hours=24), language),
        "attachments": (("receipt.pdf", human_size(153_600, language)),),
        "refused": ("invoice.exe",), "faq_answer": "...",
        "reply_marker": reply_marker(language), "support_name": "Casino Support",
        "errors": ["#frobnicate"], "more_errors": 0, "commands": ("#assign me", "#close"),
        "kind": "first_response", "stage": 1, "policy": "vip",
        "left": localized_duration(timedelta(hours=2), language, case="accusative"),
        "promised": localized_duration(timedelta(hours=4), language),
        "promised_in": localized_duration(timedelta(hours=4), language, case="accusative"),
        "overdue": localized_duration(timedelta(minutes=30), language, case="accusative"),
        "waited": localized_duration(timedelta(hours=5), language),
        "due": "2026-12-06 12:00 UTC", "assignee": None, "command": "#assign me",
        "question": ["..."], "received_at": "2026-12-06 09:00 UTC",
        "reason": "the payment provider needs two more weeks",  # #extend REASON
        # the held notice: only the claimed address, when, how many; never the mail's words
        "address": "aliya@casino.test", "count": 1, "last": False,
        "quiet_until": "2026-12-06 10:00 UTC", "coalesced": False,
        "event": "new", "player_name": "Aliya", "player_address": "aliya@example.kz",
        "text": "...", "category": "refund", "priority": "high", "status": "open",
        "sla_due": "2026-12-06 12:00 UTC", "sla_left": localized_duration(
            timedelta(hours=2), language, case="accusative"), "sla_overdue": False,
        "earlier_tickets": 2, "attached": True,
        "attachment_limit": human_size(5 * 2**20, language), "agent_name": "Aliya",
        "subject": "1042",
        # the complaint letters: dates, the dispute paragraph, the ADR body
        "received": "2026-11-20", "final_due": "2027-01-19", "dispute": "...", "letter": "...",
        "adr_name": "Aliya ADR", "adr_url": "https://adr.example", "adr_address": "Almaty",
        "point": "1/2",
        # the summary of a ticket whose automatic mail was stopped (responders/loops.py)
        "limit": "ticket", "withheld": "notification", "show_command": "ticketd show 1042",
        "list_command": "ticketd tickets --loop-stopped",
        "resume_commands": ("#status open", "#note"),
        "window": localized_duration(timedelta(minutes=10), language, case="accusative"),
        # several brands: the ticket's, and a player who asked for exclusion under another
        "brand": "Stars Poker", "safeguarded": {"since": "2026-12-01",
                                                "intent": "self_exclusion",
                                                "brand": "Lucky Casino"},
    }
    variants: list[dict[str, Any]] = [
        {}, {"subject": "", "requester_name": "", "attachments": (), "refused": (),
             "faq_answer": None, "tag": None, "player_name": "",
             "text": "", "sla_due": None, "agent_name": "", "question": [],
             "brand": "", "safeguarded": None},
        {"errors": ["#a", "#b"], "more_errors": 3, "stage": 2, "event": "follow_up",
         "attached": False, "sla_overdue": True, "assignee": "Aliya", "kind": "resolution",
         "category": "other", "count": 3, "coalesced": True, "limit": "ticket_day",
         "withheld": "relay", "support_name": "",
         "window": localized_duration(timedelta(days=1), language, case="accusative")},
        {"stage": 3, "kind": "next_response", "category": "self_exclusion", "sla_left": "",
         "adr_name": None, "adr_url": None, "adr_address": None, "count": 4, "last": True,
         "limit": "address", "withheld": "held_notice",
         "safeguarded": {"since": "2026-12-01", "intent": "gambling_harm", "brand": "Stars"}},
    ]
    return [base | variant for variant in variants]


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_english_template_exists_in_every_language(language: str) -> None:
    names = sorted(p.name for p in (TEMPLATES / language).iterdir() if p.name.endswith(".j2"))
    assert names == ENGLISH_NAMES


@pytest.mark.parametrize(("language", "name"), list(product(LANGUAGES, ENGLISH_NAMES)))
def test_every_template_renders_every_branch(language: str, name: str) -> None:
    template = _environment().get_template(f"{language}/{name}")
    for context in _contexts(language):
        assert template.render(**context).strip()


HELD_VARIABLES = {"address": "aliya@casino.test", "received_at": "2026-12-06 09:00 UTC",
                  "quiet_until": "2026-12-06 10:00 UTC", "support_name": "Casino Support"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_held_notice_needs_none_of_the_held_mails_words(language: str) -> None:
    """Rendered from the notice's own variables alone (no subject, no reason: StrictUndefined
    would fail on either), it says the claimed address and time, the count when there is more
    than one, and the end of the quiet hour only in the last notice."""
    template = _environment().get_template(f"{language}/held.txt.j2")
    first = template.render(**HELD_VARIABLES, count=1, last=False)
    again = template.render(**HELD_VARIABLES, count=3, last=False)
    last = template.render(**HELD_VARIABLES, count=4, last=True)
    for text in (first, again, last):
        assert "aliya@casino.test" in text and "09:00" in text
    assert "3" not in first and "3" in again and "4" in last
    assert "10:00" in last and "10:00" not in first + again
    assert _environment().get_template(f"{language}/held.subject.txt.j2").render().strip()


@pytest.mark.parametrize(("language", "name"),
                         list(product(LANGUAGES, ("notification.txt.j2", "notification.html.j2"))))
def test_a_coalesced_notification_says_so(language: str, name: str) -> None:
    template = _environment().get_template(f"{language}/{name}")
    context = _contexts(language)[0]
    alone = template.render(**context | {"coalesced": False})
    burst = template.render(**context | {"coalesced": True})
    assert alone != burst and len(burst) > len(alone) + 60


def _english_phrases() -> set[str]:
    """Runs of three or more words of the English templates' own text (not variables)."""
    phrases: set[str] = set()
    for name in ENGLISH_NAMES:
        source = (TEMPLATES / "en" / name).read_text(encoding="utf-8")
        source = re.sub(r"\{%.*?%\}|\{\{.*?\}\}|<[^>]+>|&\w+;", "\n", source, flags=re.S)
        for piece in re.split(r"[\n.,:;()!?\"]+", source):
            words = re.findall(r"[A-Za-z][A-Za-z'-]*", piece)
            if len(words) >= 3:
                phrases.add(" ".join(words).lower())
    return phrases


ENGLISH_PHRASES = _english_phrases()
# Words of a template's own text that are no proper noun and no tag: a label left in
# English ("Subject:", "Attachments") is as much a leak as a sentence.
ENGLISH_WORDS = ("subject", "attachments", "requester", "category", "priority", "ticket",
                 "reply", "regards", "hello", "please", "received", "commands", "appeal",
                 "hour", "hours", "minute", "minutes", "days")  # and the code's durations


def _leaks(rendered: str) -> list[str]:
    words = " ".join(re.findall(r"[A-Za-z][A-Za-z'-]*", re.sub(r"<[^>]+>", " ", rendered)))
    text = words.lower()
    leaked = [p for p in ENGLISH_PHRASES if re.search(rf"\b{re.escape(p)}\b", text)]
    return leaked + [w for w in ENGLISH_WORDS if re.search(rf"\b{w}\b", text)]


def test_the_check_finds_english_where_there_is_some() -> None:
    assert "reply to this message and keep" in ENGLISH_PHRASES
    rendered = _environment().get_template("en/ack.txt.j2").render(**_contexts("en")[0])
    assert "reply to this message and keep" in _leaks(rendered)
    german = _environment().get_template("de/ack.txt.j2").render(**_contexts("de")[0])
    leaked = _leaks(german + "\nWe will reply within 24 hours.")
    assert leaked == ["we will reply within", "reply", "hours"]


@pytest.mark.parametrize(("language", "name"),
                         list(product([code for code in LANGUAGES if code != "en"], ENGLISH_NAMES)))
def test_no_english_sentence_in_a_translation(language: str, name: str) -> None:
    template = _environment().get_template(f"{language}/{name}")
    for context in _contexts(language):
        leaked = _leaks(template.render(**context))
        assert not leaked, f"{language}/{name}: {leaked}"


def test_each_language_has_its_own_reply_marker() -> None:
    assert set(REPLY_MARKER_BY_LANGUAGE) == set(LANGUAGES)
    assert len(set(REPLY_MARKER_BY_LANGUAGE.values())) == len(LANGUAGES)


@pytest.mark.parametrize("name", ENGLISH_NAMES)
def test_uzbek_is_written_with_its_own_apostrophes(name: str) -> None:
    """Uzbek Latin writes oʻ, gʻ with U+02BB and the tutuq belgisi with U+02BC, as every
    Uzbek template here does: an ASCII ' in one line reads as a typing slip."""
    for context in _contexts("uz"):
        text = _environment().get_template(f"uz/{name}").render(**context)
        assert not re.search(r"[A-Za-z]'[a-z]", html.unescape(text)), f"uz/{name}"


KEYS = (b"languages-test-key-0123456789abc",)


def _composed(language: str) -> str:
    """An acknowledgement and a relay in `language`: headers and both bodies, as text."""
    desk = Identity("support@casino.test", "Casino", KEYS, Templates(), language=language)
    player = Address("aliya@mail.test", "Aliya")
    ack = acknowledgement(AckContext(
        ticket_number=1042, language=language, subject="1042", requester=player,
        category="self_exclusion", first_response=timedelta(hours=1, minutes=30),
        attachments=(("a.pdf", 300), ("b.pdf", 3 * 2**20)), faq_answer="...",
        in_reply_to=None, references=(), refused=("c.exe",)), desk)
    answer = relay(RelayContext(ticket_number=1042, language=language, player=player,
                                subject="1042", agent_name="Aliya", text="..."), desk)
    parts = []
    for msg in (ack, answer):
        parsed = email.message_from_bytes(msg.as_bytes(), policy=default)
        parts += [str(parsed["Subject"]), str(parsed["From"])]
        parts += [p.get_content() for p in parsed.walk() if p.get_content_maintype() == "text"]
    return "\n".join(parts)


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != "en"])
def test_composed_mails_carry_no_english_either(language: str) -> None:
    """What the code fills in (durations, sizes, the marker, the relay's From) is translated
    too, not only the templates' text."""
    leaked = _leaks(_composed(language))
    assert not leaked, leaked
    assert _leaks(_composed("en"))  # the same check finds the English of an English mail


def _summary(language: str, limit: str = "ticket_day") -> str:
    """The loop-stopped summary as composed for a reader of `language`: headers and body."""
    desk = Identity("support@casino.test", "Casino", KEYS, Templates(), language="en")
    over = Over(limit, 20, timedelta(days=1))  # type: ignore[arg-type]
    _, raw = loop_summary(1042, over, "notification", to=("ops@casino.test",), desk=desk,
                          sender="support@casino.test", language=language,
                          now=datetime(2026, 12, 6, 9, 0, tzinfo=UTC))
    parsed = email.message_from_bytes(raw, policy=default)
    return "\n".join([str(parsed["Subject"]), parsed.get_body(("plain",)).get_content()])


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != "en"])
def test_the_loop_summary_is_written_in_its_readers_language(language: str) -> None:
    """Subject, reason, the mail withheld and the window are the reader's; only the commands
    to type stay as they are."""
    for limit in ("ticket", "ticket_day", "address"):
        text = _summary(language, limit)
        assert not _leaks(text), _leaks(text)
        assert "#1042" in text and "20" in text and "ticketd tickets --loop-stopped" in text
    english = _summary("en")
    assert "daily limit" in english and _leaks(english)
