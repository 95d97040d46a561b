"""`ticketd deliver` and `ticketd outbox` as operators run them, in child processes, and the
crash between the server's "250" and the commit."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.outbox.smtp_sink import HOST, Refuses
from tests.support.configs import write_config

ENV = {"TICKETD_SECURITY__SECRET": "k-0123456789abcdef"}


def config_for(tmp_path: Path, db_url: str, port: int, **outbox_keys: object) -> str:
    return str(write_config(tmp_path, db_url, smtp={"host": HOST, "port": port, "tls": "none"},
                            outbox=outbox_keys))


def test_deliver_once_sends_what_is_due_and_exits_0(db_url, tmp_path, queue, smtp_server,
                                                    ticketd, look):
    server = smtp_server()
    queued = [queue()[1] for _ in range(3)]
    done = ticketd("--config", config_for(tmp_path, db_url, server.port, batch_size=2),
                   "deliver", "--once", env=ENV)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == ["sent=3", "deferred=0", "dead=0"]
    assert server.handler.message_ids() == queued
    assert {r.state for r in look.rows()} == {"sent"}


def test_outbox_lists_rows_and_retry_sends_a_dead_one_again(db_url, tmp_path, queue, ticket_id,
                                                            smtp_server, ticketd, look):
    refusing = smtp_server(Refuses("550 5.7.1 rejected"))
    row_id, message_id = queue(["a@mail.test", "b@mail.test"], ticket_id=ticket_id)
    config = config_for(tmp_path, db_url, refusing.port)
    assert ticketd("--config", config, "deliver", "--once", env=ENV).returncode == 0

    listed = ticketd("--config", config, "outbox", "--json", env=ENV)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert {"id", "state", "kind", "ticket", "message_id", "recipients", "accepted", "refused",
            "attempts", "next_attempt_at", "expires_at", "last_error", "created_at",
            "sent_at"} <= set(row)
    assert (row["id"], row["state"], row["ticket"]) == (row_id, "dead", 10001)
    assert row["recipients"] == ["a@mail.test", "b@mail.test"] and "550" in row["last_error"]
    text = ticketd("--config", config, "outbox", "--state", "dead", env=ENV).stdout.decode()
    assert f"{row_id:>6} dead" in text and "ticket=#10001" in text and "550 5.7.1" in text
    assert ticketd("--config", config, "outbox", "--state", "sent", env=ENV).stdout == b""

    retried = ticketd("--config", config, "outbox", "retry", str(row_id), env=ENV)
    assert retried.returncode == 0, retried.stderr
    assert look.row(row_id).state == "pending"
    assert ticketd("--config", config, "outbox", "retry", str(row_id), env=ENV).returncode == 1
    sink = smtp_server()
    sent = ticketd("--config", config_for(tmp_path, db_url, sink.port), "deliver", "--once",
                   env=ENV)
    assert sent.returncode == 0 and sink.handler.message_ids() == [message_id]
    assert look.row(row_id).state == "sent"


def test_deliver_without_smtp_is_a_configuration_error(sqlite_url, tmp_path, ticketd):
    config = str(write_config(tmp_path, sqlite_url))
    done = ticketd("--config", config, "deliver", "--once", env=ENV)
    assert done.returncode == 78 and b"no [smtp] section" in done.stderr


def test_a_crash_between_250_and_the_commit_repeats_the_mail_once_with_its_message_id(
        db_url, tmp_path, queue, smtp_server, ticketd, look):
    server = smtp_server()
    row_id, message_id = queue()
    config = config_for(tmp_path, db_url, server.port, lease="1s")
    crashed = ticketd("--config", config, "deliver", "--once",
                      env=ENV | {"TICKETD_FAILPOINT": "after-smtp-accept"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert server.handler.message_ids() == [message_id]  # the server took it ...
    row = look.row(row_id)
    assert (row.state, row.attempts) == ("pending", 1)  # ... but we never recorded that
    assert row.claimed_until is not None
    time.sleep(max(0.0, (row.claimed_until - datetime.now(UTC)).total_seconds()) + 0.2)

    again = ticketd("--config", config, "deliver", "--once", env=ENV)
    assert again.returncode == 0, again.stderr
    received = server.handler.message_ids()
    assert len(received) == 2  # one duplicate at most ...
    assert set(received) == {message_id}  # ... carrying the same Message-ID
    row = look.row(row_id)
    assert (row.state, row.attempts) == ("sent", 2)


@pytest.mark.parametrize(("commit_every", "committed"), [(1, 14), (10, 10)])
def test_a_crash_mid_batch_repeats_at_most_the_unsettled_outcomes(
        db_url, tmp_path, queue, smtp_server, ticketd, look, commit_every, committed):
    """Outcomes are committed every `[outbox] commit_every` rows (default 1): a crash at the
    15th "250" of a batch of 25 sends again only the rows after the last commit, with their
    Message-IDs: one at the default, five when ten are committed together."""
    server = smtp_server()
    queued = [queue([f"p{i}@mail.test"])[1] for i in range(25)]
    config = config_for(tmp_path, db_url, server.port, lease="1s", commit_every=commit_every)
    crashed = ticketd("--config", config, "deliver", "--once",
                      env=ENV | {"TICKETD_FAILPOINT": "after-smtp-accept@15"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert server.handler.message_ids() == queued[:15]
    assert len([r for r in look.rows() if r.state == "sent"]) == committed
    time.sleep(1.5)  # the lease of the claimed rows runs out
    again = ticketd("--config", config, "deliver", "--once", env=ENV)
    assert again.returncode == 0, again.stderr
    received = server.handler.message_ids()
    assert sorted(set(received)) == sorted(queued)
    assert len(received) - len(queued) == 15 - committed  # only the unsettled ones ...
    assert set(received[15:]) >= set(queued[committed:15])  # ... each with its Message-ID
    assert {r.state for r in look.rows()} == {"sent"}
