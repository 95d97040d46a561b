"""Log lines as a log store reads them: fields that parse back exactly (logfmt or JSON), and
the journal's priority prefix when stderr is the journal."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import logs
from tests.support.configs import write_config
from tests.support.mails import mail

_KEY = re.compile(r"[A-Za-z0-9_.\-]+=")
_BARE = re.compile(r'[^\s"\\=]+')
_STRICT = json.JSONDecoder(strict=True)  # control characters inside a string are an error


def parse_logfmt(line: str) -> dict[str, str]:
    """A strict logfmt reader: key=bare or key="JSON string", one space between pairs,
    no key twice, nothing left over."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(line):
        key = _KEY.match(line, at)
        assert key, f"no key at {at}: {line[at:]!r}"
        name, at = key.group()[:-1], key.end()
        if line.startswith('"', at):
            value, at = _STRICT.raw_decode(line, at)
        else:
            bare = _BARE.match(line, at)
            value, at = (bare.group(), bare.end()) if bare else ("", at)
        assert name not in fields, f"{name} twice"
        fields[name] = value
        if at < len(line):
            assert line[at] == " ", f"expected a space at {at}: {line[at:]!r}"
            at += 1
    return fields


AWKWARD = {
    "quote": 'he said "refund" twice',
    "backslash": "C:\\mail\\in",
    "newline": "first line\nsecond\r\nthird",
    "spaces": "  padded  ",
    "equals": "a=b c=d",
    "tab": "a\tb",
    "control": "bell\x07end",
    "unicode": "вывод средств — €50",
    "empty": "",
    "trailing_backslash": "ends with \\",
}


def _record(fields: dict, msg: str = "ingested", level: int = logging.INFO) -> logging.LogRecord:
    record = logging.LogRecord("daemon.ingest", level, __file__, 1, msg, (), None)
    record.fields = fields
    return record


def test_a_logfmt_line_with_awkward_values_parses_back_to_the_same_fields() -> None:
    line = logs.KeyValueFormatter().format(_record({**AWKWARD, "ticket": 10001}))
    assert "\n" not in line and "\r" not in line
    fields = parse_logfmt(line)
    assert {k: fields[k] for k in AWKWARD} == AWKWARD
    assert fields["ticket"] == "10001" and fields["msg"] == "ingested"
    assert fields["level"] == "info" and fields["logger"] == "daemon.ingest"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", fields["ts"])


def test_a_json_line_with_awkward_values_parses_back_to_the_same_fields() -> None:
    line = logs.JsonFormatter().format(_record({**AWKWARD, "ticket": 10001}))
    assert "\n" not in line
    doc = json.loads(line)
    assert {k: doc[k] for k in AWKWARD} == AWKWARD
    assert doc["ticket"] == 10001 and doc["msg"] == "ingested" and doc["level"] == "info"


def test_a_traceback_is_one_escaped_field() -> None:
    try:
        raise ValueError('bad "value"\nhere')
    except ValueError:
        record = logging.LogRecord("daemon", logging.ERROR, __file__, 1, "failed", (),
                                   sys.exc_info())
    fields = parse_logfmt(logs.KeyValueFormatter().format(record))
    assert fields["exc"].startswith("Traceback")
    assert 'ValueError: bad "value"\nhere' in fields["exc"]


def test_fields_never_hide_the_line_s_own_keys() -> None:
    fields = parse_logfmt(logs.KeyValueFormatter().format(_record({"level": "fake"})))
    assert fields["level"] == "info"


def test_secrets_are_masked_in_message_fields_and_traceback() -> None:
    secret = 'Pa55 "w0rd"\\'
    formatter = logs.KeyValueFormatter(secrets=[secret])
    try:
        raise RuntimeError(f"login refused with {secret}")
    except RuntimeError:
        record = logging.LogRecord("daemon", logging.ERROR, __file__, 1, "failed %s", (secret,),
                                   sys.exc_info())
    record.fields = {"error": f"x {secret} y"}
    line = formatter.format(record)
    assert "Pa55" not in line and "w0rd" not in line
    assert parse_logfmt(line)["error"] == "x *** y"


@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_secrets_a_reload_brings_are_masked_and_the_old_ones_stay_masked(
        fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = "old-Secret-1234567", "new-Secret-7654321"
    logs.setup("INFO", fmt, [old])
    try:
        logs.mask_also([new])
        logging.getLogger("daemon.test").error("refused", extra={"fields": {
            "error": f"server said {old} then {new}"}})
    finally:
        logging.getLogger().handlers.clear()
    line = capsys.readouterr().err
    assert "refused" in line
    assert old not in line and new not in line


@pytest.mark.parametrize(("level", "prefix"), [
    (logging.DEBUG, "<7>"), (logging.INFO, "<6>"), (logging.WARNING, "<4>"),
    (logging.ERROR, "<3>"), (logging.CRITICAL, "<2>")])
def test_journal_lines_carry_the_sd_daemon_priority_and_no_timestamp(level: int,
                                                                     prefix: str) -> None:
    for formatter in (logs.KeyValueFormatter(journal=True), logs.JsonFormatter(journal=True)):
        line = formatter.format(_record({"ticket": 7}, level=level))
        assert line.startswith(prefix)
        body = line[len(prefix):]
        doc = json.loads(body) if body.startswith("{") else parse_logfmt(body)
        assert "ts" not in doc and doc["ticket"] in ("7", 7)


def _ticketd(args: list[str], stderr: Path, env: dict[str, str], stdin: bytes = b"") -> int:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("TICKETD_") and k != "JOURNAL_STREAM"}
    with stderr.open("wb") as err:
        stat = os.fstat(err.fileno())
        stream = {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"} if env.pop("journal") else {}
        return subprocess.run([sys.executable, "-m", "daemon", *args], input=stdin,
                              stdout=subprocess.DEVNULL, stderr=err, timeout=120,
                              env={**clean, **stream, **env}).returncode


@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_with_stderr_as_the_journal_errors_are_found_by_priority(
        sqlite_url: str, tmp_path: Path, fmt: str) -> None:
    config = str(write_config(tmp_path, sqlite_url, logging={"format": fmt}))
    env = {"journal": True}
    assert _ticketd(["--config", config, "db", "upgrade"], tmp_path / "0.log", dict(env)) == 0
    raw = mail(sender="player@mail.test", message_id="<journal-1@mail.test>")
    assert _ticketd(["--config", config, "ingest"], tmp_path / "1.log", dict(env), raw) == 0
    # Neither [imap] nor [smtp]: `run` logs an error and exits 78.
    assert _ticketd(["--config", config, "run"], tmp_path / "2.log", dict(env)) == 78
    lines = [line for name in ("1.log", "2.log")
             for line in (tmp_path / name).read_text().splitlines()]
    prefixed = [re.match(r"<(\d)>(.*)", line) for line in lines]
    assert lines and all(prefixed), lines
    docs = [(int(m[1]), json.loads(m[2]) if fmt == "json" else parse_logfmt(m[2]))
            for m in prefixed if m]
    assert all("ts" not in doc for _, doc in docs)
    [ingested] = [doc for prio, doc in docs if doc["msg"] == "ingested" and prio == 6]
    assert str(ingested["ticket"]) == "10001" and ingested["outcome"] == "ticket"
    assert len(ingested["key"]) >= 32
    errors = [doc["msg"] for prio, doc in docs if prio == 3]
    assert errors == ["nothing to do: neither [imap], [[mailboxes]], [smtp] nor [webhooks] "
                      "is configured"]


def test_stderr_that_is_not_the_named_journal_stream_keeps_timestamps(
        sqlite_url: str, tmp_path: Path) -> None:
    config = str(write_config(tmp_path, sqlite_url))
    assert _ticketd(["--config", config, "db", "upgrade"], tmp_path / "0.log",
                    {"journal": False}) == 0
    # Another file's device:inode (systemd's stream, inherited by a child that writes elsewhere).
    other = os.stat(config)
    code = _ticketd(["--config", config, "run"], tmp_path / "1.log",
                    {"journal": False, "JOURNAL_STREAM": f"{other.st_dev}:{other.st_ino}"})
    assert code == 78
    [line] = (tmp_path / "1.log").read_text().splitlines()
    fields = parse_logfmt(line)
    assert fields["level"] == "error" and "ts" in fields


def test_a_configuration_error_at_start_is_an_error_in_the_journal(tmp_path: Path) -> None:
    config = tmp_path / "ticketd.toml"
    config.write_text('[imap]\nport = 99999\n[logging]\nlevel = "LOUD"\n')
    code = _ticketd(["--config", str(config), "run"], tmp_path / "err.log", {"journal": True})
    assert code == 78
    lines = (tmp_path / "err.log").read_text().splitlines()
    assert len(lines) >= 3 and all(line.startswith("<3>") for line in lines), lines
    assert lines[0] == "<3>ticketd: configuration error:"
    assert any("imap.port: must be between 1 and 65535" in line for line in lines)
