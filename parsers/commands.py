"""Commands by mail: the ``#`` lines at the top of an agent's reply, before any text.

An agent answers a notification and may start with lines such as::

    #status pending
    #assign me

    Thank you, we have asked the payment provider.

The command block is the leading run of lines that start with ``#`` (blank lines
between them allowed); the first other line ends it and everything from there on is
the text. A ``#`` line that is not a well-formed known command is an error, never
text: a misspelt ``#stauts closed`` must not reach the player, and the caller
applies nothing when there is any error. ``#10234 ...`` (a ticket number) is text.

Whether the sender may give commands at all (DESIGN invariant 5) is the caller's
decision. Pure and linear: only the block is split into lines, each line is
looked at once and matched only when short, and the block has at most
``MAX_COMMAND_LINES`` lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "ADR_ENTITY_MAX",
    "ADR_OUTCOMES",
    "ADR_REFERENCE_MAX",
    "COMMAND_SYNTAX",
    "MAX_COMMAND_LINES",
    "PRIORITIES",
    "STATUSES",
    "Command",
    "CommandBlock",
    "parse_commands",
]

# The same values as storage.models (parsers may not import storage).
STATUSES: tuple[str, ...] = ("open", "pending", "resolved", "closed")
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
MAX_COMMAND_LINES = 20
# How each command is written, for the help line of the mail we send agents.
COMMAND_SYNTAX: tuple[str, ...] = (
    "#status " + "|".join(STATUSES),
    "#assign me|ADDRESS",
    "#priority " + "|".join(PRIORITIES),
    "#category NAME",
    "#note",
    "#merge NUMBER",
    "#escalate",
    "#final (the decision on the lines below)",
    "#extend REASON",
    "#adr ENTITY REFERENCE",
    "#adr-outcome upheld|partially_upheld|not_upheld|settled|withdrawn",
)
# What the complaint record keeps of an #adr referral (storage.models.Complaint).
ADR_ENTITY_MAX, ADR_REFERENCE_MAX = 200, 100
# What an ADR entity concluded, as #adr-outcome records it (and the reports count it).
ADR_OUTCOMES: tuple[str, ...] = ("upheld", "partially_upheld", "not_upheld", "settled",
                                 "withdrawn")

_MAX_LINE = 300  # a longer "#" line is not a command anyone typed
_QUOTE = 40  # how much of the agent's own words an error repeats
_MAX_NUMBER_DIGITS = 12  # ticket numbers, as in responders.references
_CATEGORY = re.compile(r"[a-z0-9_]{1,40}")
_NUMBER = re.compile(r"#?([0-9]{1,%d})" % _MAX_NUMBER_DIGITS)
# A strict ASCII addr-spec, as responders.addresses accepts for outgoing mail.
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*\.[a-z][a-z0-9-]*")
_EDGE = " \t\ufeff\u200b\u200c\u200d\u2060\xa0"  # what clients and HTML leave around a line
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Command:
    name: str  # lower case, without "#": "status", "assign", ...
    argument: str | None  # normalised: lower case; "me" or an address; digits for merge


@dataclass(frozen=True)
class CommandBlock:
    commands: tuple[Command, ...]
    text: str  # what follows the command lines, stripped
    errors: tuple[str, ...]  # one line per unknown or malformed command; apply nothing if any


def parse_commands(visible_text: str, categories: frozenset[str] | None = None) -> CommandBlock:
    """The commands at the top of an agent's visible reply text, and the text after them.

    ``categories``, when given, are the category names ``#category`` accepts.
    """
    text = visible_text.replace("\r\n", "\n").replace("\r", "\n")
    commands: list[Command] = []
    errors: list[str] = []
    seen: set[str] = set()
    lines = 0
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end].strip(_EDGE)
        if line and (not line.startswith("#") or line[1:2].isdigit()):
            break  # text, or a ticket number such as "#10234 is my ticket"
        if line:
            lines += 1
            if lines > MAX_COMMAND_LINES:
                errors.append(f"more than {MAX_COMMAND_LINES} command lines; send the rest "
                              "in another mail")
                break
            command, error = _command(line, categories)
            if command is not None and command.name in seen:
                command, error = None, f"#{command.name} is given more than once"
            if command is not None:
                seen.add(command.name)
                commands.append(command)
            if error:
                errors.append(error)
        start = end + 1
    rest = text[start:].strip()
    return CommandBlock(tuple(commands), rest, tuple(errors))


def _command(line: str, categories: frozenset[str] | None) -> tuple[Command | None, str]:
    """One ``#`` line as a command, or None and the error to tell the agent."""
    if len(line) > _MAX_LINE:
        return None, f'command line too long ("{_quote(line)}")'
    word, *arguments = line.split()
    name = word[1:].lower()
    parse = _ARGUMENTS.get(name)
    if parse is None:
        return None, f'unknown command "{_quote(word)}"'
    argument, error = parse(arguments, categories)
    if error:
        return None, error
    return Command(name, argument), ""


_Parsed = tuple[str | None, str]  # (argument, error)
_Parser = Callable[[list[str], frozenset[str] | None], _Parsed]


def _one_of(name: str, allowed: tuple[str, ...]) -> _Parser:
    def parse(arguments: list[str], categories: frozenset[str] | None) -> _Parsed:
        value = " ".join(arguments).lower()
        if value in allowed:
            return value, ""
        return None, f"#{name} needs one of {', '.join(allowed)} ({_got(arguments)})"

    return parse


def _assign(arguments: list[str], categories: frozenset[str] | None) -> _Parsed:
    value = " ".join(arguments).lower()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    if value == "me" or (len(value) <= 254 and _ADDRESS.fullmatch(value)):
        return value, ""
    return None, f'#assign needs "me" or one mail address ({_got(arguments)})'


def _category(arguments: list[str], categories: frozenset[str] | None) -> _Parsed:
    value = " ".join(arguments).lower()
    if _CATEGORY.fullmatch(value) and (categories is None or value in categories):
        return value, ""
    if categories:
        return None, f"#category needs one of {', '.join(sorted(categories))} ({_got(arguments)})"
    return None, ("#category needs one word of letters, digits and _ "
                  f"({_got(arguments)})")


def _merge(arguments: list[str], categories: frozenset[str] | None) -> _Parsed:
    found = _NUMBER.fullmatch(" ".join(arguments))
    if found:
        return str(int(found.group(1))), ""
    return None, f"#merge needs a ticket number, e.g. #merge 10234 ({_got(arguments)})"


def _extend(arguments: list[str], categories: frozenset[str] | None) -> _Parsed:
    """The reason is the player's to read (the written notice): kept as typed."""
    reason = " ".join(_CONTROL.sub(" ", " ".join(arguments)).split())
    if reason:
        return reason, ""
    return None, "#extend needs the reason the player is told, e.g. #extend waiting for the bank"


def _adr(arguments: list[str], categories: frozenset[str] | None) -> _Parsed:
    """ENTITY (one or more words) and the entity's REFERENCE (the last word), as typed, each
    within what the complaint record keeps of it."""
    words = _CONTROL.sub(" ", " ".join(arguments)).split()
    if len(words) < 2:
        return None, ("#adr needs the entity and its case reference, e.g. #adr IBAS 12345 "
                      f"({_got(arguments)})")
    entity, reference = " ".join(words[:-1]), words[-1]
    if len(entity) > ADR_ENTITY_MAX:
        return None, (f"#adr: the entity's name is {len(entity)} characters, at most "
                      f"{ADR_ENTITY_MAX} are kept; write its usual name "
                      f"({_got(arguments)})")
    if len(reference) > ADR_REFERENCE_MAX:
        return None, (f"#adr: the case reference (the last word) is {len(reference)} "
                      f"characters, at most {ADR_REFERENCE_MAX} are kept ({_got(arguments)})")
    return " ".join(words), ""


def _nothing(name: str, hint: str = "") -> _Parser:
    def parse(arguments: list[str], categories: frozenset[str] | None) -> _Parsed:
        if not arguments:
            return None, ""
        return None, f"#{name} takes nothing after it{hint} ({_got(arguments)})"

    return parse


def _got(arguments: list[str]) -> str:
    return f'got "{_quote(" ".join(arguments))}"' if arguments else "got nothing"


def _quote(text: str) -> str:
    """The agent's words as an error may repeat them: one short line."""
    text = " ".join(_CONTROL.sub(" ", text).split()).replace('"', "'")
    return text if len(text) <= _QUOTE else text[: _QUOTE - 1] + "…"


_ARGUMENTS: dict[str, _Parser] = {
    "status": _one_of("status", STATUSES),
    "assign": _assign,
    "priority": _one_of("priority", PRIORITIES),
    "category": _category,
    "note": _nothing("note", "; write the note on the lines below"),
    "merge": _merge,
    "escalate": _nothing("escalate"),
    "final": _nothing("final", "; write the decision on the lines below"),
    "extend": _extend,
    "adr": _adr,
    "adr-outcome": _one_of("adr-outcome", ADR_OUTCOMES),
}
