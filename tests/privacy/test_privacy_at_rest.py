"""Nothing of a mail readable under the storage path in the layout an operator gets: on SQLite
the database is `ticketd.db` under the storage path (sealed with SQLCipher), on PostgreSQL it
is elsewhere. Every byte of every file is searched: database, write-ahead log, shared memory,
raw mails, attachments, quarantine, trash, key files."""

from __future__ import annotations

import base64
import json
import os
import quopri
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import doctor
from storage import dbcipher
from tests.privacy.conftest import KEY_A, KEY_B, Desk, complaint, make_desk, stored_bytes

SUBJECT = "Quokka jackpot frozen at table nine"
BODY = "Please unfreeze account Zebulon-4471; my card ends 9917 and my address is Kestrel Way 12."
SCAN = b"%PDF-1.4 driving licence of Zebulon Quist, licence Q-55-2931 " * 30


def the_mail() -> bytes:
    return complaint("Zebulon Quist <zebulon@mail.test>", SUBJECT, BODY,
                     message_id="<zeb-1@mail.test>",
                     attachments=(("licence.pdf", "application/pdf", SCAN),))


def needles() -> list[bytes]:
    """The plaintext and the forms it takes in a mail (base64, quoted-printable); gzip files
    are searched decompressed by `stored_bytes`."""
    plain = [SUBJECT.encode(), BODY.encode(), b"Zebulon-4471", b"Kestrel Way", SCAN[:60],
             b"zebulon@mail.test"]
    encoded = [base64.b64encode(SCAN)[:64], base64.b64encode(BODY.encode())[:40],
               base64.b64encode(SUBJECT.encode())[:24], quopri.encodestring(BODY.encode())[:40]]
    return plain + encoded


@pytest.fixture(params=["sqlite", "postgresql"])
def default_desk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Desk]:
    """A desk as configured by an operator: SQLite in its default place (no [database]), or
    PostgreSQL; with a key file."""
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    desk = make_desk(tmp_path, url, [KEY_A])
    yield desk
    desk.app.engine.dispose()


def found(root: Path, wanted: list[bytes]) -> dict[str, list[bytes]]:
    hits: dict[str, list[bytes]] = {}
    for path, data in stored_bytes(root):
        for needle in wanted:
            if needle in data:
                hits.setdefault(str(path.relative_to(root)), []).append(needle)
    return hits


def test_no_plaintext_of_a_mail_or_its_answer_is_anywhere_under_the_storage_path(
        default_desk: Desk) -> None:
    desk = default_desk
    number = desk.ingest(the_mail())
    assert number is not None
    [ack] = desk.outbox_plain()  # the acknowledgement is queued, and quotes the subject
    assert SUBJECT.encode() in ack
    names = {p.name for p in desk.state.rglob("*")}
    if desk.app.engine.dialect.name == "sqlite":
        assert {"ticketd.db", "ticketd.db-wal", "ticketd.db.key"} <= names, names
    assert any(n.endswith(".sealed") for n in names)
    assert found(desk.state, needles()) == {}
    # What the agents need still works inside the sealed database: search and show.
    result = desk.cli("search", "--json", "Zebulon")
    assert result.exit_code == 0, result.output
    assert [hit["number"] for hit in json.loads(result.output)] == [number]
    assert SUBJECT in desk.cli("show", str(number)).output
    [check] = [c for c in doctor.run_checks(desk.app.settings) if c.name == "encryption"]
    sealed = desk.app.engine.dialect.name == "sqlite"
    assert check.ok and ("database sealed (SQLCipher)" if sealed else "PostgreSQL") in check.detail


def test_without_sqlcipher_the_same_search_finds_the_database_in_clear(tmp_path: Path) -> None:
    desk = make_desk(tmp_path, None, None)  # no key file: nothing sealed, the test can fail
    try:
        desk.ingest(the_mail())
        assert SUBJECT.encode() in found(desk.state, needles()).get("ticketd.db-wal", []) + \
            found(desk.state, needles()).get("ticketd.db", [])
    finally:
        desk.app.engine.dispose()


def test_a_database_in_clear_is_refused_until_encrypt_db_then_opens_sealed(
        tmp_path: Path) -> None:
    plain = make_desk(tmp_path, None, None)
    number = plain.ingest(the_mail())
    plain.app.engine.dispose()
    keyed = tmp_path / "ticketd.toml"
    text = keyed.read_text() + f'[privacy]\nkey_file = "{tmp_path / "master-key"}"\n'
    (tmp_path / "master-key").write_text(KEY_A + "\n")
    (tmp_path / "master-key").chmod(0o600)
    keyed.write_text(text)
    refused = plain.cli("show", str(number))
    assert refused.exit_code == 78 and "privacy encrypt-db" in refused.output
    doctor_line = plain.cli("doctor").output
    assert "encrypt-db" in doctor_line
    result = plain.cli("privacy", "encrypt-db")
    assert result.exit_code == 0, result.output
    database = plain.state / "ticketd.db"
    assert dbcipher.state(database) == "sealed"
    in_db = {n for n in found(plain.state, [SUBJECT.encode(), b"Zebulon-4471"])
             if n.startswith("ticketd.db")}  # files stored before the key file stay in clear
    assert in_db == set() and (plain.state / "ticketd.db.key").exists()
    shown = plain.cli("show", str(number))
    assert shown.exit_code == 0 and SUBJECT in shown.output
    again = plain.cli("privacy", "encrypt-db")
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_rotating_the_master_key_rewraps_the_database_key(tmp_path: Path) -> None:
    desk = make_desk(tmp_path, None, [KEY_A])
    number = desk.ingest(the_mail())
    desk.app.engine.dispose()
    key_file = desk.state / "ticketd.db.key"
    before = json.loads(key_file.read_text())["master_key_id"]
    rotated = desk.rebuilt([KEY_B, KEY_A])
    result = rotated.cli("privacy", "rotate-master")
    assert result.exit_code == 0 and "the database key too" in result.output, result.output
    rotated.app.engine.dispose()
    assert json.loads(key_file.read_text())["master_key_id"] != before
    only_new = desk.rebuilt([KEY_B])  # the old line dropped: the database still opens
    assert SUBJECT in only_new.cli("show", str(number)).output
    only_new.app.engine.dispose()
    without = desk.config.read_text().split("[privacy]")[0]
    desk.config.write_text(without)
    refused = desk.cli("show", str(number))
    assert refused.exit_code == 78 and "encrypted (SQLCipher)" in refused.output


def test_two_processes_making_the_first_database_key_keep_one(tmp_path: Path) -> None:
    """The daemon and `doctor` starting together on a new database: the second to write the
    key file takes the first one's key instead of replacing it (which would leave the
    database sealed with a key nobody has)."""
    from storage import dbcipher
    from storage.crypto import MasterKeys

    masters = MasterKeys.of((os.urandom(32),))
    database = str(tmp_path / "ticketd.db")
    first = dbcipher.key_for(database, masters)
    path = dbcipher.key_path(database)
    second = dbcipher.write_new_key(path, masters)  # lost the race: the file is there
    assert second == first == dbcipher.read_key(path, masters)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no part file left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rotating_the_master_key_rewraps_the_database_key_and_reads_it_back(
        tmp_path: Path) -> None:
    from storage import dbcipher
    from storage.crypto import MasterKeys

    old = MasterKeys.of((os.urandom(32),))
    database = str(tmp_path / "ticketd.db")
    key = dbcipher.key_for(database, old)
    both = MasterKeys.of((os.urandom(32), old.newest.secret))
    assert dbcipher.rewrap(database, both) is True
    assert dbcipher.read_key(dbcipher.key_path(database), MasterKeys.of((both.newest.secret,))) == key
    assert dbcipher.rewrap(database, both) is False  # already under the newest


def test_a_file_uri_is_refused_when_the_database_must_be_sealed(tmp_path: Path) -> None:
    from storage import db
    from storage.crypto import MasterKeys
    from storage.db import SchemaError

    url = f"sqlite:///file:{tmp_path / 'ticketd.db'}?uri=true"
    with pytest.raises(SchemaError, match="not a file: URI"):
        db.make_engine(url, masters=MasterKeys.of((os.urandom(32),)))
