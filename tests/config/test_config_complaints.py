"""[complaints]: the profile and its ADR entity reach the desk's identity; an old config's
[responders] dispute_text still loads and replaces the English paragraph only."""

from __future__ import annotations

from datetime import timedelta

import pytest

from config import ConfigError, load_settings
from daemon.runtime import build
from responders.complaints import dispute_paragraph


def test_a_regulators_profile_needs_the_adr_entity(write, env) -> None:
    path = write("ticketd.toml", '[complaints]\nprofile = "ukgc"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env)
    assert str(caught.value).startswith(f"{path}: complaints.adr_entity: required with "
                                        'profile = "ukgc"')


def test_the_profile_its_overrides_and_the_adr_entity_per_language_reach_the_identity(
        write, env) -> None:
    path = write("ticketd.toml", """
        [complaints]
        profile = "cga"
        adr_entity = "Fair Play Adjudication"
        adr_url = "https://adr.test"
        adr_translations = { ru = { entity = "Служба честной игры" } }
        adr_addresses = ["Cases@ADR.test"]
        final_deadline = "21d"
        deadline_action = "head_of_support"
        [sla]
        head_of_support_address = "head@casino.test"
        timezone = "Europe/Malta"
    """)
    identity = build(load_settings(path, env)).identity
    profile = identity.complaints
    assert profile.name == "cga" and profile.final_within == timedelta(weeks=3)
    assert profile.extension == timedelta(weeks=4)  # not overridden: the profile's
    assert profile.adr_entity("ru").name == "Служба честной игры"
    assert profile.adr_entity("ru").url == "https://adr.test"  # the English one where unset
    assert profile.adr_entity("de").name == "Fair Play Adjudication"
    assert identity.adr_addresses == frozenset({"cases@adr.test"})
    assert identity.deadline_action == "head_of_support"
    assert profile.timezone == "Europe/Malta"  # business days are the desk's weekdays


def test_handing_the_letter_to_a_head_of_support_who_is_not_configured_is_refused(
        write, env) -> None:
    """Else the guard would reach the deadline and hand the letter to nobody."""
    path = write("ticketd.toml", """
        [complaints]
        profile = "ukgc"
        adr_entity = "Fair Play Adjudication"
        deadline_action = "head_of_support"
    """)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env)
    assert str(caught.value).startswith(
        f'{path}: complaints.deadline_action: "head_of_support" needs [sla] '
        "head_of_support_address")


def test_an_old_dispute_text_loads_and_replaces_the_english_paragraph_only(write, env) -> None:
    path = write("ticketd.toml", '[responders]\ndispute_text = "Write to the Ombudsman."\n')
    identity = build(load_settings(path, env)).identity
    assert dispute_paragraph(identity, "en") == "Write to the Ombudsman."
    russian = dispute_paragraph(identity, "ru")
    assert "Ombudsman" not in russian and "окончательным решением" in russian


def test_without_complaints_settings_every_ticket_is_recorded_without_deadlines(write, env) -> None:
    identity = build(load_settings(write("ticketd.toml", ""), env)).identity
    assert identity.complaints.name == "none" and identity.complaints.final_within is None
