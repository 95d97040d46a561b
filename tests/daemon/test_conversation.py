"""Threading rules as pure functions: which ticket a mail joins, and what a follow-up does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from daemon.conversation import References, asks_for_appeal, decide
from storage.queries import TicketFacts

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=14)


def facts(number: int = 10001, status: str = "open", participant: bool = True,
          resolved_at: datetime | None = None) -> TicketFacts:
    return TicketFacts(number - 10000, number, status, resolved_at, participant)


def test_a_stored_reference_joins_whoever_sends_it() -> None:
    d = decide(References(stored=facts(participant=False)), NOW, WINDOW)
    assert (d.action, d.ticket.number, d.reopen) == ("join", 10001, False)


def test_a_signed_reference_joins() -> None:
    assert decide(References(signed=facts()), NOW, WINDOW).action == "join"


def test_a_subject_tag_joins_only_a_participant() -> None:
    assert decide(References(tagged=(facts(participant=True),)), NOW, WINDOW).action == "join"
    stranger = decide(References(tagged=(facts(participant=False),)), NOW, WINDOW)
    assert (stranger.action, stranger.ticket.number) == ("new", 10001)
    assert "outside the ticket" in stranger.reason


def test_a_forged_signature_opens_a_new_linked_ticket() -> None:
    d = decide(References(forged=facts()), NOW, WINDOW)
    assert (d.action, d.ticket.number) == ("new", 10001)
    assert "bad signature" in d.reason


def test_nothing_named_opens_a_plain_new_ticket() -> None:
    d = decide(References(), NOW, WINDOW)
    assert (d.action, d.ticket) == ("new", None)


def test_a_reply_to_a_pending_ticket_reopens_it() -> None:
    d = decide(References(stored=facts(status="pending")), NOW, WINDOW)
    assert (d.action, d.reopen) == ("join", True)


def test_a_reply_within_the_window_reopens_a_resolved_ticket() -> None:
    d = decide(References(stored=facts(status="resolved", resolved_at=NOW - timedelta(days=13))),
               NOW, WINDOW)
    assert (d.action, d.reopen) == ("join", True)


def test_a_reply_after_the_window_opens_a_new_linked_ticket() -> None:
    d = decide(References(stored=facts(status="resolved", resolved_at=NOW - timedelta(days=15))),
               NOW, WINDOW)
    assert (d.action, d.ticket.number) == ("new", 10001)
    assert "14 days" in d.reason


def test_a_reply_to_a_closed_ticket_opens_a_new_linked_ticket() -> None:
    d = decide(References(stored=facts(status="closed")), NOW, WINDOW)
    assert (d.action, d.ticket.number, d.reason) == ("new", 10001, "reply to a closed ticket")


def test_escalation_words_are_found_in_russian_and_english() -> None:
    words = ("escalate", "обжаловать", "жалоба на решение")
    assert asks_for_appeal("Я хочу ОБЖАЛОВАТЬ это решение", words) == "обжаловать"
    assert asks_for_appeal("Please escalate this.", words) == "escalate"
    assert asks_for_appeal("Это жалоба на решение службы", words) == "жалоба на решение"
    assert asks_for_appeal("Спасибо, всё понятно", words) is None
