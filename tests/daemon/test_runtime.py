"""The runtime value built from a real configuration file: one identity shared by every part,
staff, templates and secrets fixed at build time, and a build error that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_settings
from daemon import runtime
from daemon.runtime import Current
from tests.support.configs import write_config

ENV = {"TICKETD_SECURITY__SECRET": "runtime-test-secret-0123456789"}
AGENTS = """
[[team.agents]]
address = "Lead@Casino.test"
name = "Lea"
groups = ["payments"]
"""


def configure(tmp_path: Path, *, agents: str = "", **sla: str) -> Path:
    templates = tmp_path / "templates" / "en"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "ack.txt.j2").write_text("Ticket {{ tag }}: FIRST\n")
    password = tmp_path / "smtp-password"
    password.write_text("first-password\n")
    password.chmod(0o600)  # a secret readable by others is refused
    config = write_config(
        tmp_path, "sqlite:///unused.db",
        smtp={"host": "127.0.0.1", "port": 2525, "tls": "none", "username": "desk",
              "password_file": str(password)},
        responders={"templates_dir": str(templates.parent)},
        sla={"team_lead_address": "lead@casino.test",
             "head_of_support_address": "head@casino.test", **sla},
    )
    config.write_text(config.read_text() + agents)
    return config


def build(config: Path) -> runtime.Runtime:
    return runtime.build(load_settings(config, ENV), str(config))


def test_one_identity_for_every_part_and_brands_by_name(tmp_path: Path) -> None:
    value = build(configure(tmp_path))
    identity = value.identity
    assert (identity.address, identity.name, identity.brand) == (
        "support@casino.test", "Casino Support", "default")
    assert dict(value.brands) == {"default": identity}
    assert value.brand("no-such-brand") is identity and value.brand(None) is identity
    assert value.ack is not None and value.ack.identity is identity
    assert value.team is not None and value.team.identity is identity
    assert value.ingest.support_addresses == identity.addresses == {"support@casino.test"}
    assert value.ingest.keys == identity.keys != ()


def test_sla_recipients_are_staff_unless_they_are_agents(tmp_path: Path) -> None:
    alone = build(configure(tmp_path / "a"))
    assert alone.team is not None
    assert {a: s.name for a, s in alone.team.staff.items()} == {
        "lead@casino.test": "Team lead", "head@casino.test": "Head of support"}
    assert {"lead@casino.test", "head@casino.test"} <= alone.ingest.agents
    listed = build(configure(tmp_path / "b", agents=AGENTS))
    assert listed.team is not None
    assert list(listed.team.staff) == ["head@casino.test"]  # the lead is an agent already
    assert listed.team.member("lead@casino.test").name == "Lea"  # type: ignore[union-attr]


def test_templates_and_secrets_are_those_of_the_build(tmp_path: Path) -> None:
    config = configure(tmp_path)
    first = build(config)
    (tmp_path / "templates" / "en" / "ack.txt.j2").write_text("Ticket {{ tag }}: SECOND\n")
    (tmp_path / "smtp-password").write_text("second-password\n")
    # Files changed on disk: the running value renders and logs in as it was built.
    assert first.identity.templates.render("ack.txt.j2", "en", tag="[#1]") == "Ticket [#1]: FIRST\n"
    assert first.sender is not None and first.sender.transport.password == "first-password"
    current = Current(first)
    second = build(config)
    assert current.swap(second) is first and current.value is second and current.generation == 2
    assert second.identity.templates.render("ack.txt.j2", "en", tag="[#1]") == \
        "Ticket [#1]: SECOND\n"
    assert second.sender is not None and second.sender.transport.password == "second-password"


def test_a_template_that_does_not_compile_is_a_config_error_naming_it(tmp_path: Path) -> None:
    config = configure(tmp_path)
    (tmp_path / "templates" / "en" / "ack.txt.j2").write_text("{{ tag }}\n\n{% if %}\n")
    with pytest.raises(ConfigError) as refused:
        build(config)
    assert str(refused.value).startswith(
        f"{config}: responders.templates_dir: template en/ack.txt.j2 line 3: ")


def test_the_brands_language_and_the_agents_languages_come_from_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, "sqlite:///unused.db",
                          support={"default_language": "kk"},
                          smtp={"host": "127.0.0.1", "port": 2525, "tls": "none"})
    config.write_text(config.read_text() + AGENTS + 'languages = ["ru", "kk"]\n')
    value = build(config)
    assert value.identity.language == value.ingest.default_language == "kk"
    assert value.identity.templates.language("fr") == "kk"  # no French: the brand's language
    assert value.team is not None
    assert value.team.agents["lead@casino.test"].languages == ("ru", "kk")


def test_a_language_the_operator_adds_templates_for_is_one_a_mail_can_be_found_in(
        tmp_path: Path) -> None:
    config = configure(tmp_path)  # its templates_dir has an en/ override; add Italian
    (tmp_path / "templates" / "it").mkdir()
    (tmp_path / "templates" / "it" / "ack.txt.j2").write_text("Richiesta {{ tag }}\n")
    value = build(config)
    assert {"it", "en", "ru", "de", "uz"} <= set(value.ingest.languages)
    assert value.identity.templates.language("it") == "it"
