"""[[brands]] and [[mailboxes]]: several brands and mailboxes in one configuration; the old
single-mailbox configuration ([imap] + [support]) still means one brand "default"."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import config
from config import ConfigError, load_settings
from daemon import app, runtime
from responders.complaints import final_text

EXAMPLE = Path(config.__file__).with_name("ticketd.example.toml")
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()

BRANDS = """
    [database]
    url = "sqlite:///{db}"

    [[brands]]
    name = "lucky"
    address = "help@lucky.test"
    display_name = "Lucky Casino Help"
    default_language = "de"
    signature = "Lucky Casino"
    routing = {{ refund = "lucky_payments" }}

    [brands.complaints]
    profile = "ukgc"
    adr_entity = "IBAS"
    adr_url = "https://www.ibas-uk.com"

    [[brands]]
    name = "stars"
    address = "support@stars.test"
    aliases = ["help@stars.test"]
    display_name = "Stars Poker"

    [[mailboxes]]
    name = "lucky-inbox"
    brand = "lucky"
    host = "imap.lucky.test"
    username = "help@lucky.test"
    password_file = "{pw}"

    [[mailboxes]]
    name = "stars-inbox"
    brand = "stars"
    host = "imap.stars.test"
    username = "support@stars.test"
    password_file = "{pw}"
    folder = "Support"
"""


def _brands(write, tmp_path: Path) -> Path:
    text = BRANDS.format(db=tmp_path / "t.db", pw=write("imap-password", "pw\n"))
    return write("ticketd.toml", text)


def _error(path: Path, environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ)
    return str(caught.value)


def test_two_brands_two_mailboxes_load_and_build_one_identity_each(write, env, tmp_path):
    settings = load_settings(_brands(write, tmp_path), env)
    assert [(m.name, m.brand) for m in settings.all_mailboxes] == [
        ("lucky-inbox", "lucky"), ("stars-inbox", "stars")]
    value = runtime.build(settings)
    assert set(value.brands) == {"default", "lucky", "stars"}
    lucky, stars = value.brand("lucky"), value.brand("stars")
    assert (lucky.address, lucky.name, lucky.language) == ("help@lucky.test",
                                                          "Lucky Casino Help", "de")
    assert lucky.templates.language("xx") == "de"  # player's → brand default → en
    assert stars.templates.language("xx") == "en"  # no default of its own: the desk's
    assert lucky.complaints.name == "ukgc" and stars.complaints.name == "none"
    assert stars.addresses == {"support@stars.test", "help@stars.test"}
    assert value.ingest_for("lucky").brand == "lucky"
    assert value.ingest_for("stars").default_language == "en"
    # Mail from any brand's address is ours, whichever mailbox it reaches.
    assert "help@stars.test" in value.ingest_for("lucky").support_addresses
    assert value.brand("nobody") is value.identity  # an unknown name: the default brand


def test_the_old_single_mailbox_config_loads_as_one_default_brand(write, env):
    path = write("ticketd.toml", """
        [support]
        address = "support@casino.test"
        name = "Casino Support"
        default_language = "ru"

        [database]
        url = "sqlite:////var/lib/ticketd/ticketd.db"

        [imap]
        host = "imap.casino.test"
        username = "support@casino.test"
        password_file = "{pw}"
    """.replace("{pw}", str(write("pw", "secret\n"))))
    settings = load_settings(path, env)
    (box,) = settings.all_mailboxes
    assert (box.name, box.brand, box.host) == ("imap", "default", "imap.casino.test")
    assert box.lease_name == "support@casino.test@imap.casino.test:993/INBOX"  # as before
    value = runtime.build(settings)
    assert list(value.brands) == ["default"]
    assert value.identity.address == "support@casino.test"
    assert value.ingest_for("default") is value.ingest


def test_the_shipped_example_loads_with_its_single_mailbox(write):
    environ = {
        "TICKETD_IMAP__PASSWORD_FILE": str(write("imap-password", "imap-pw\n")),
        "TICKETD_SMTP__PASSWORD_FILE": str(write("smtp-password", "smtp-pw\n")),
        "TICKETD_SECURITY__SECRET_FILE": str(write("secret", "new-key-0123456789ab\n")),
        "TICKETD_PRIVACY__KEY_FILE": str(write("master-key", MASTER_KEY + "\n")),
    }
    settings = load_settings(EXAMPLE, environ)
    assert [box.name for box in settings.all_mailboxes] == ["imap"]
    assert settings.brands == ()
    assert list(runtime.build(settings).brands) == ["default"]


@pytest.mark.parametrize(("change", "key", "reason"), [
    ({'brand = "stars"': 'brand = "strs"'}, "mailboxes[1].brand",
     'no brand "strs": name one of default, lucky, stars, or add [[brands]] with '
     'name = "strs"'),
    ({'name = "stars-inbox"': 'name = "lucky-inbox"'}, "mailboxes[1].name",
     '"lucky-inbox" is already the name of mailboxes[0]'),
    ({'name = "stars"\n': 'name = "lucky"\n'}, "brands[1].name",
     '"lucky" is already the name of brands[0]'),
    ({'name = "stars"\n': 'name = "default"\n'}, "brands[1].name",
     '"default" is the brand of [support]'),
    ({'host = "imap.stars.test"': 'host = "imap.lucky.test"',
      'username = "support@stars.test"': 'username = "help@lucky.test"',
      'folder = "Support"': 'folder = "INBOX"'}, "mailboxes[1].folder",
     "help@lucky.test@imap.lucky.test:993/INBOX is watched by mailboxes[0] already"),
    ({'display_name = "Stars Poker"': ""}, "brands[1].display_name", "required"),
    ({'address = "support@stars.test"': 'address = "stars"'}, "brands[1].address",
     'must be a mail address like "support@example.com"'),
    ({'default_language = "de"': 'default_language = "German"'},
     "brands[0].default_language", 'must be a language code such as "ru"'),
    ({'adr_entity = "IBAS"': ""}, "brands[0].complaints.adr_entity",
     'required with profile = "ukgc"'),
    ({'address = "support@stars.test"': 'address = "Help@Lucky.test"'}, "brands[1].address",
     '"Help@Lucky.test" is already an address of brands[0]: one address is one brand\'s'),
    ({'aliases = ["help@stars.test"]': 'aliases = ["help@lucky.test"]'}, "brands[1].aliases",
     '"help@lucky.test" is already an address of brands[0]'),
    ({'address = "support@stars.test"': 'address = "support@localhost"'}, "brands[1].address",
     '"support@localhost" is already an address of [support]'),
    ({'adr_url = "https://www.ibas-uk.com"':
      'adr_url = "https://www.ibas-uk.com"\n    deadline_action = "head_of_support"'},
     "brands[0].complaints.deadline_action",
     '"head_of_support" needs [sla] head_of_support_address'),
])
def test_a_bad_brand_or_mailbox_names_file_key_and_reason(write, env, tmp_path, change, key,
                                                         reason):
    text = BRANDS.format(db=tmp_path / "t.db", pw=write("imap-password", "pw\n"))
    for old, new in change.items():
        assert old in text
        text = text.replace(old, new, 1) if old.startswith("name") else text.replace(old, new)
    path = write("ticketd.toml", text)
    assert f"{path}: {key}: {reason}" in _error(path, env)


def test_a_password_written_into_a_mailbox_is_refused(write, env, tmp_path):
    text = BRANDS.format(db=tmp_path / "t.db", pw=write("imap-password", "pw\n"))
    text = text.replace('folder = "Support"', 'folder = "Support"\n    password = "hunter2"')
    path = write("ticketd.toml", text)
    error = _error(path, env)
    assert f"{path}: mailboxes[1].password: secrets are not read from the configuration " \
           "file: use password_file" in error
    assert "hunter2" not in error


def test_a_mailbox_named_after_imap_beside_imap_is_refused(write, env, tmp_path):
    text = BRANDS.format(db=tmp_path / "t.db", pw=write("imap-password", "pw\n"))
    text = text.replace('name = "lucky-inbox"', 'name = "imap"') + (
        '\n[imap]\nhost = "imap.casino.test"\nusername = "desk"\npassword_file = "'
        + str(tmp_path / "imap-password") + '"\n')
    path = write("ticketd.toml", text)
    assert f'{path}: mailboxes[0].name: "imap" is already the name of [imap]' in _error(path, env)


def test_the_readme_example_of_several_brands_loads(tmp_path, env):
    readme = (Path(config.__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Several brands", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    templates = tmp_path / "lucky-templates"
    templates.mkdir()
    example = example.replace("/etc/ticketd/templates/lucky", str(templates))
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "lucky-imap-password").write_text("pw\n")
    path = tmp_path / "ticketd.toml"
    path.write_text(example + f'\n[database]\nurl = "sqlite:///{tmp_path / "t.db"}"\n')
    settings = load_settings(path, env | {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert [(b.name, b.brand) for b in settings.all_mailboxes] == [
        ("lucky-inbox", "lucky"), ("stars-inbox", "stars")]
    value = runtime.build(settings)
    assert value.brand("lucky").complaints.name == "ukgc"
    assert value.brand("stars").language == "ru"


def test_check_config_shows_each_brand_and_mailbox_without_their_secrets(write, env,
                                                                         tmp_path):
    import tomllib

    from config import render_effective

    text = BRANDS.format(db=tmp_path / "t.db", pw=write("imap-password", "pw-SECRET-9\n"))
    settings = load_settings(write("ticketd.toml", text), env)
    shown = render_effective(settings)
    assert "pw-SECRET-9" not in shown
    parsed = tomllib.loads(shown)
    assert [b["name"] for b in parsed["brands"]] == ["lucky", "stars"]
    assert parsed["brands"][0]["complaints"]["profile"] == "ukgc"
    assert [(m["name"], m["brand"]) for m in parsed["mailboxes"]] == [
        ("lucky-inbox", "lucky"), ("stars-inbox", "stars")]
    assert parsed["mailboxes"][0]["password"] == "***"


def test_a_brands_own_adr_entity_is_named_in_its_final_answer_not_the_desk_text(
        write, env, tmp_path):
    text = BRANDS.format(db=tmp_path / "t.db", pw=write("imap-password", "pw\n"))
    path = write("ticketd.toml", text + '''
    [responders]
    dispute_text = "You may refer this to the Desk Arbitration Board."
''')
    value = runtime.build(load_settings(path, env))
    lucky = final_text(value.brand("lucky"), "en", "We cannot pay this out.")
    assert "IBAS" in lucky and "Desk Arbitration Board" not in lucky
    # a brand without complaints of its own, and the desk, keep the operator's text
    stars = final_text(value.brand("stars"), "en", "We cannot pay this out.")
    assert "Desk Arbitration Board" in stars
    assert "Desk Arbitration Board" in final_text(value.identity, "en", "No.")


def test_the_postgresql_pool_has_room_for_each_mailboxs_lease_lock(write, env, tmp_path):
    # Each watcher holds one pooled connection for its lease for as long as it runs: the
    # pool is the work's five plus one per mailbox. Building it connects to nothing.
    text = BRANDS.format(db=tmp_path / "t.db", pw=write("imap-password", "pw\n")).replace(
        f'url = "sqlite:///{tmp_path / "t.db"}"',
        'url = "postgresql+psycopg://ticketd@127.0.0.1:5432/ticketd"')
    assert "postgresql" in text
    desk = app.build(load_settings(write("ticketd.toml", text), env), check_schema=False)
    assert len(desk.settings.all_mailboxes) == 2
    assert desk.engine.pool.size() == 5 + 2
