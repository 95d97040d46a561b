"""`ticketd spam list` and `ticketd quarantine list`: newest first, as a table or JSON, and a
sentence when there is nothing to list."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy.orm import Session

from daemon.cli import main
from storage import db
from storage.models import IngestRecord
from tests.support.configs import write_config

AT = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


def _cli(config: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _keep(url: str, *records: tuple[str, str, str | None, str | None]) -> None:
    """(outcome, reason, Message-ID, responsible-gambling intent), oldest first."""
    engine = db.make_engine(url)
    with Session(engine) as session, session.begin():
        for n, (outcome, reason, message_id, intent) in enumerate(records):
            session.add(IngestRecord(ingest_key=f"key-{n}", outcome=outcome, reason=reason,
                                     header_message_id=message_id, raw_sha256="0" * 64,
                                     raw_size=100 + n, created_at=AT, rg_intent=intent))
    engine.dispose()


def test_nothing_to_list_is_said_so(sqlite_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, sqlite_url)
    assert _cli(config, "spam", "list") == "no spam kept\n"
    assert _cli(config, "quarantine", "list") == "nothing quarantined\n"
    assert json.loads(_cli(config, "spam", "list", "--json")) == []
    assert json.loads(_cli(config, "quarantine", "list", "--json")) == []


def test_each_list_shows_its_own_records_newest_first(sqlite_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, sqlite_url)
    _keep(sqlite_url, ("spam", "X-Spam-Flag: YES", "<a@mail.test>", None),
          ("quarantined", "no readable sender", None, None),
          ("stored", "", "<c@mail.test>", None),
          ("spam", "X-Spam-Status: Yes, score=9", "<d@mail.test>", "self_exclusion"))
    assert json.loads(_cli(config, "spam", "list", "--json")) == [
        {"id": 4, "received": "2026-12-06T09:30:00+00:00",
         "verdict": "X-Spam-Status: Yes, score=9", "message_id": "<d@mail.test>", "size": 103,
         "responsible_gambling": "self_exclusion"},
        {"id": 1, "received": "2026-12-06T09:30:00+00:00", "verdict": "X-Spam-Flag: YES",
         "message_id": "<a@mail.test>", "size": 100, "responsible_gambling": None},
    ]
    assert _cli(config, "spam", "list").splitlines() == [
        f"      4  2026-12-06T09:30:00+00:00  {'RG:self_exclusion':<18}  "
        f"{'X-Spam-Status: Yes, score=9':<60}  <d@mail.test>",
        f"      1  2026-12-06T09:30:00+00:00  {'':<18}  {'X-Spam-Flag: YES':<60}  <a@mail.test>",
    ]
    assert [row["id"] for row in json.loads(_cli(config, "spam", "list", "--json",
                                                 "--limit", "1"))] == [4]
    assert json.loads(_cli(config, "quarantine", "list", "--json")) == [
        {"id": 2, "received": "2026-12-06T09:30:00+00:00", "reason": "no readable sender",
         "message_id": "", "size": 101}]
    assert _cli(config, "quarantine", "list") == (
        f"      2  2026-12-06T09:30:00+00:00  {'no readable sender':<70}  \n")
