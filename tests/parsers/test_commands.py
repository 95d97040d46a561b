"""parse_commands: the # lines at the top of an agent's reply, and the text after them."""

from __future__ import annotations

import time

import pytest

from parsers.commands import (
    COMMAND_SYNTAX,
    MAX_COMMAND_LINES,
    Command,
    CommandBlock,
    parse_commands,
)


def test_only_commands() -> None:
    block = parse_commands("#status pending\n#priority urgent\n#escalate")
    assert block == CommandBlock(
        (Command("status", "pending"), Command("priority", "urgent"), Command("escalate", None)),
        "",
        (),
    )


def test_commands_then_text() -> None:
    block = parse_commands(
        "#status resolved\n\n#assign me\n\nHello Ivan,\n\nthe payment went out today.\n"
    )
    assert block.commands == (Command("status", "resolved"), Command("assign", "me"))
    assert block.text == "Hello Ivan,\n\nthe payment went out today."
    assert block.errors == ()


def test_text_without_commands_is_all_text() -> None:
    block = parse_commands("  Hello,\n#status closed\n")
    assert block == CommandBlock((), "Hello,\n#status closed", ())


def test_a_command_after_the_text_is_text() -> None:
    block = parse_commands("#note\nCalled the player.\n#status closed")
    assert block.commands == (Command("note", None),)
    assert block.text == "Called the player.\n#status closed"


@pytest.mark.parametrize("text", ["", "\n\n", "   \r\n\t\r\n"])
def test_empty(text: str) -> None:
    assert parse_commands(text) == CommandBlock((), "", ())


def test_names_and_values_are_case_insensitive() -> None:
    block = parse_commands("#STATUS Open\n#Priority HIGH\n#Category Refund")
    assert block.commands == (
        Command("status", "open"), Command("priority", "high"), Command("category", "refund"),
    )


def test_unknown_command_is_an_error_not_text() -> None:
    block = parse_commands("#stauts open\nThe money is on its way.")
    assert block.commands == ()
    assert block.errors == ('unknown command "#stauts"',)
    assert block.text == "The money is on its way."


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("#priority asap", '#priority needs one of low, normal, high, urgent (got "asap")'),
        ("#priority", "#priority needs one of low, normal, high, urgent (got nothing)"),
        ("#status open now", '#status needs one of open, pending, resolved, closed '
                             '(got "open now")'),
        ("#assign anna", '#assign needs "me" or one mail address (got "anna")'),
        ("#assign a@b.example c@d.example", '#assign needs "me" or one mail address '
                                            '(got "a@b.example c@d.example")'),
        ("#merge ten", '#merge needs a ticket number, e.g. #merge 10234 (got "ten")'),
        ("#merge 1234567890123", '#merge needs a ticket number, e.g. #merge 10234 '
                                 '(got "1234567890123")'),
        ("#category pay-outs", '#category needs one word of letters, digits and _ '
                               '(got "pay-outs")'),
        ("#escalate now", '#escalate takes nothing after it (got "now")'),
        ("#note called him", '#note takes nothing after it; write the note on the lines below '
                             '(got "called him")'),
        ("#", 'unknown command "#"'),
        ("# status open", 'unknown command "#"'),
    ],
)
def test_malformed_commands(line: str, error: str) -> None:
    block = parse_commands(line + "\nText.")
    assert block.commands == ()
    assert block.errors == (error,)


def test_every_error_is_reported_and_good_commands_are_still_parsed() -> None:
    block = parse_commands("#status open\n#stauts closed\n#priority asap\n#escalate")
    assert block.commands == (Command("status", "open"), Command("escalate", None))
    assert len(block.errors) == 2


def test_a_command_given_twice_is_an_error() -> None:
    block = parse_commands("#status open\n#status closed")
    assert block.commands == (Command("status", "open"),)
    assert block.errors == ("#status is given more than once",)


def test_assign_me() -> None:
    assert parse_commands("#assign me").commands == (Command("assign", "me"),)
    assert parse_commands("#assign ME").commands == (Command("assign", "me"),)


@pytest.mark.parametrize(
    "value", ["someone@casino.example", "Someone@Casino.Example", "<someone@casino.example>"]
)
def test_assign_an_address(value: str) -> None:
    block = parse_commands(f"#assign {value}")
    assert block.commands == (Command("assign", "someone@casino.example"),)
    assert block.errors == ()


@pytest.mark.parametrize(
    "value", ["someone@", "@casino.example", "a@b@casino.example", "a b@casino.example",
              "someone@casino", "someone@-casino.example", "anna@казино.example"]
)
def test_assign_refuses_what_is_not_one_address(value: str) -> None:
    block = parse_commands(f"#assign {value}")
    assert block.commands == ()
    assert block.errors and block.errors[0].startswith("#assign needs")


@pytest.mark.parametrize("value", ["#10234", "10234", "#010234"])
def test_merge(value: str) -> None:
    assert parse_commands(f"#merge {value}").commands == (Command("merge", "10234"),)


def test_merge_with_the_ticket_tag() -> None:
    block = parse_commands("#merge #10234\nDuplicate of the earlier one.")
    assert block.commands == (Command("merge", "10234"),)
    assert block.text == "Duplicate of the earlier one."


@pytest.mark.parametrize("text", ["#10234 is my ticket", "#10234", "#1 priority for us"])
def test_a_ticket_number_at_the_top_is_text(text: str) -> None:
    block = parse_commands(text + "\n#status closed")
    assert block.commands == () and block.errors == ()
    assert block.text == text + "\n#status closed"


def test_a_ticket_number_ends_the_block() -> None:
    block = parse_commands("#status pending\n#10234 is the same case")
    assert block.commands == (Command("status", "pending"),)
    assert block.text == "#10234 is the same case"


def test_categories_restrict_the_category() -> None:
    categories = frozenset({"refund", "bet_settlement"})
    assert parse_commands("#category refund", categories).commands == (
        Command("category", "refund"),
    )
    block = parse_commands("#category bonus", categories)
    assert block.errors == ('#category needs one of bet_settlement, refund (got "bonus")',)


def test_crlf_and_cr_line_breaks() -> None:
    block = parse_commands("#status pending\r\n\r\n#note\r\nLine one\r\nLine two\r\n")
    assert block.commands == (Command("status", "pending"), Command("note", None))
    assert block.text == "Line one\nLine two"
    assert parse_commands("#escalate\rText").text == "Text"


def test_invisible_characters_around_a_line() -> None:
    block = parse_commands("\ufeff#status open\n\xa0#escalate\xa0\nText")
    assert block.commands == (Command("status", "open"), Command("escalate", None))


def test_at_most_twenty_command_lines() -> None:
    lines = ["#note"] + ["#escalate"] * (MAX_COMMAND_LINES - 1) + ["#status open", "Text"]
    block = parse_commands("\n".join(lines))
    assert any(f"more than {MAX_COMMAND_LINES}" in error for error in block.errors)
    assert Command("status", "open") not in block.commands


def test_errors_quote_the_agent_briefly_and_on_one_line() -> None:
    block = parse_commands("#priority " + "x" * 200 + "\u202e\"")
    (error,) = block.errors
    assert len(error) < 120 and "\u202e" not in error and '"x' in error
    (too_long,) = parse_commands("#status " + "open " * 100).errors
    assert too_long.startswith("command line too long")


def test_syntax_help_names_every_command() -> None:
    names = {line.split()[0] for line in COMMAND_SYNTAX}
    assert names == {"#status", "#assign", "#priority", "#category", "#note", "#merge",
                     "#escalate", "#final", "#extend", "#adr", "#adr-outcome"}


def test_complaint_commands_keep_what_the_player_and_the_adr_body_will_read() -> None:
    block = parse_commands("#final\n#adr IBAS Ltd CASE-77\n\nWe cannot refund this bet.")
    assert [(c.name, c.argument) for c in block.commands] == [
        ("final", None), ("adr", "IBAS Ltd CASE-77")]
    assert block.text == "We cannot refund this bet." and not block.errors
    (extend,) = parse_commands("#extend Waiting for the Bank's statement").commands
    assert extend.argument == "Waiting for the Bank's statement"  # as typed: the player reads it


def test_complaint_commands_refuse_what_is_missing_or_unknown() -> None:
    assert parse_commands("#extend").errors[0].startswith("#extend needs the reason")
    assert parse_commands("#adr IBAS").errors[0].startswith("#adr needs the entity")
    assert parse_commands("#adr-outcome won").errors[0].startswith("#adr-outcome needs one of")
    assert parse_commands("#final now").errors[0].startswith("#final takes nothing")


def test_adr_keeps_its_entity_and_reference_within_what_the_record_holds() -> None:
    entity = "E" * 200
    assert parse_commands(f"#adr {entity} REF-1").commands[0].argument == f"{entity} REF-1"
    [error] = parse_commands(f"#adr {entity}x REF-1").errors
    assert error.startswith("#adr: the entity's name is 201 characters, at most 200")
    [error] = parse_commands(f"#adr IBAS {'9' * 101}").errors
    assert error.startswith("#adr: the case reference (the last word) is 101 characters")


@pytest.mark.parametrize(
    "hostile",
    [
        "#" * 1_000_000,
        "#status " + " " * 1_000_000 + "open",
        "\n" * 1_000_000 + "#status open",
        " \n" * 500_000,
        "#x\n" * 333_333,
        "#assign " + "a." * 500_000 + "@x.example",
        "#merge " + "9" * 1_000_000,
        "#10234 " + "#" * 1_000_000,
    ],
)
def test_one_megabyte_of_hostile_input_is_quick(hostile: str) -> None:
    started = time.perf_counter()
    block = parse_commands(hostile)
    assert time.perf_counter() - started < 1.0
    assert len(block.errors) <= MAX_COMMAND_LINES + 1
