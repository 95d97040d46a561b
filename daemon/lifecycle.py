"""The ticket's lifecycle rules as functions of values (DESIGN: rules stay pure, in one place).

`apply_command` says what a command does to a ticket's state and what its event records;
the caller (daemon/team.py) writes the result to the row in its transaction. A command that
needs the database to decide (``#merge``: is there such a ticket?) is decided by the caller,
and its effect on the state is still said here (`merged_into`). New commands (a final
decision, an extension) add a rule here and a line to RULES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

FINAL_STATUSES = ("resolved", "closed")


@dataclass(frozen=True)
class TicketState:
    """What the rules read and change of a ticket."""

    status: str
    assignee: str | None = None
    priority: str = "normal"
    category: str = "other"
    resolved_at: datetime | None = None
    appeal_requested_at: datetime | None = None


@dataclass(frozen=True)
class Change:
    """The state after one command, and what its event records beside the argument."""

    state: TicketState
    detail: dict[str, Any] = field(default_factory=dict)


Rule = Callable[[TicketState, "str | None", str, datetime], Change]


def _status(state: TicketState, value: str | None, actor: str, now: datetime) -> Change:
    status = value or state.status
    resolved_at = now if status == "resolved" else None
    return Change(replace(state, status=status, resolved_at=resolved_at),
                  {"before": state.status})


def _assign(state: TicketState, value: str | None, actor: str, now: datetime) -> Change:
    """"me" is whoever wrote the command: an agent, or staff answering an escalation."""
    return Change(replace(state, assignee=actor if value == "me" else value),
                  {"before": state.assignee})


def _priority(state: TicketState, value: str | None, actor: str, now: datetime) -> Change:
    return Change(replace(state, priority=value or state.priority), {"before": state.priority})


def _category(state: TicketState, value: str | None, actor: str, now: datetime) -> Change:
    return Change(replace(state, category=value or state.category), {"before": state.category})


def _escalate(state: TicketState, value: str | None, actor: str, now: datetime) -> Change:
    return Change(replace(state, appeal_requested_at=now))


def _final(state: TicketState, value: str | None, actor: str, now: datetime) -> Change:
    """#final ends the complaints procedure: the ticket is resolved (its SLA clocks stop);
    the complaint record (daemon/complaint_rules.py) keeps the decision and its time."""
    return Change(replace(state, status="resolved", resolved_at=now), {"before": state.status})


RULES: dict[str, Rule] = {"status": _status, "assign": _assign, "priority": _priority,
                          "category": _category, "escalate": _escalate, "final": _final}


def apply_command(state: TicketState, name: str, value: str | None, actor: str,
                  now: datetime) -> Change | None:
    """The change of command `name`; None for a command that changes no state (#note)."""
    rule = RULES.get(name)
    return rule(state, value, actor, now) if rule else None


def merged_into(state: TicketState) -> TicketState:
    """A ticket merged into another is closed; the other carries the conversation."""
    return replace(state, status="closed")


def after_public_reply(state: TicketState, commands: tuple[str, ...]) -> TicketState:
    """An answer waits on the player (pending), unless the same mail set a status (or gave
    the final decision, which resolves it)."""
    return state if {"status", "final"} & set(commands) else replace(state, status="pending")


def is_final_answer(commands: tuple[tuple[str, str | None], ...]) -> bool:
    """A reply that resolves or closes the ticket, or says #final, is the desk's final answer."""
    return any((name == "status" and value in FINAL_STATUSES) or name == "final"
               for name, value in commands)
