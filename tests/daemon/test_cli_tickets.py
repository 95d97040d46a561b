"""Finding and overseeing tickets from the command line: `tickets` with its filters, `search`,
`show` with what every mail sent said, `events --json`, `--version`; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

from sqlalchemy import event, text, update
from sqlalchemy.orm import Session

from storage import db, queries, search
from storage import sla as sla_store
from storage.models import Message, Ticket
from tests.daemon.test_cli import ticketd
from tests.outbox.smtp_sink import HOST, Sink, SmtpServer, free_port
from tests.support.configs import write_config
from tests.support.mails import mail

NOW = datetime.now(UTC).replace(microsecond=0)


def _seed(db_url: str, *tickets: dict) -> list[int]:
    """Tickets written straight to storage (the CLI only reads them); their public numbers."""
    engine = db.make_engine(db_url)
    numbers = []
    with db.session_factory(engine).begin() as session:
        for spec in tickets:
            numbers.append(_ticket(session, **spec))
    engine.dispose()
    return numbers


def _ticket(session: Session, *, requester: str = "player@mail.test", subject: str = "Help",
            text_: str = "", clocks: tuple = (), **values: object) -> int:
    who = queries.contact_id(session, requester)
    ticket_id, number = queries.insert_ticket(session, subject=subject, requester_id=who,
                                              **values)
    if text_:
        queries.insert_message(session, ticket_id=ticket_id, direction="in", kind="complaint",
                               sender=requester, subject=subject, visible_text=text_,
                               full_text=text_)
    for kind, due, paused in clocks:
        sla_store.insert_clock(session, ticket_id=ticket_id, kind=kind, policy="default",
                               now=NOW, due_at=due, warn_at=due - timedelta(hours=1),
                               remaining=timedelta(hours=4))
        if paused:
            [clock] = [c for c in sla_store.open_clocks(session, ticket_id) if c.kind == kind]
            sla_store.mark_paused(session, clock.id, NOW, timedelta(hours=2))
    return number


def _config(tmp_path: Path, db_url: str, **sections: dict) -> str:
    return str(write_config(tmp_path, db_url, **sections))


def _listed(config: str, *args: str) -> list[int]:
    done = ticketd("--config", config, "tickets", "--json", *args)
    assert done.returncode == 0, done.stderr
    return [t["number"] for t in json.loads(done.stdout)]


# --- tickets -----------------------------------------------------------------------------


def test_tickets_filters_by_requester_assignee_group_category_status_and_since(
        db_url: str, tmp_path: Path) -> None:
    a, b, c, d = _seed(
        db_url,
        {"requester": "sam@players.test", "assignee": "anna@casino.test", "group": "payments",
         "category": "refund", "created_at": NOW - timedelta(days=10)},
        {"requester": "Ivan@Players.test", "assignee": "boris@casino.test", "group": "payments",
         "category": "bet_settlement", "status": "pending", "created_at": NOW - timedelta(days=3)},
        {"requester": "sam@players.test", "group": "responsible_gaming",
         "category": "self_exclusion", "created_at": NOW - timedelta(hours=2)},
        {"requester": "alex@players.test", "assignee": "anna@casino.test",
         "category": "refund", "status": "resolved", "created_at": NOW - timedelta(minutes=5)},
    )
    config = _config(tmp_path, db_url)
    assert _listed(config) == [d, c, b, a]  # newest first
    assert _listed(config, "--requester", "sam@players.test") == [c, a]
    assert _listed(config, "--requester", "Ivan@Players.test") == [b]  # as it was stored
    assert _listed(config, "--assignee", "anna@casino.test") == [d, a]
    assert _listed(config, "--assignee", "none") == [c]
    assert _listed(config, "--group", "payments") == [b, a]
    assert _listed(config, "--category", "refund") == [d, a]
    assert _listed(config, "--status", "pending") == [b]
    assert _listed(config, "--since", "1d") == [d, c]
    assert _listed(config, "--since", "30m") == [d]
    assert _listed(config, "--since", (NOW - timedelta(days=4)).date().isoformat()) == [d, c, b]
    assert _listed(config, "--assignee", "anna@casino.test", "--category", "refund",
                   "--status", "open") == [a]
    assert _listed(config, "--group", "payments", "--assignee", "anna@casino.test") == [a]
    assert _listed(config, "--group", "payments", "--assignee", "boris@casino.test") == [b]
    assert _listed(config, "--group", "responsible_gaming", "--assignee", "none") == [c]
    bad = ticketd("--config", config, "tickets", "--since", "last tuesday")
    assert bad.returncode == 2 and b"neither a span" in bad.stderr


def test_tickets_limit_says_how_many_more_match(db_url: str, tmp_path: Path) -> None:
    numbers = _seed(db_url, *({"subject": f"Question {i}"} for i in range(5)))
    config = _config(tmp_path, db_url)
    human = ticketd("--config", config, "tickets", "--limit", "2")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines[:2]] == [f"#{n}" for n in numbers[:-3:-1]]
    assert lines[2] == "... 3 more (of 5); narrow the filters or raise --limit"
    as_json = ticketd("--config", config, "tickets", "--limit", "2", "--json")
    assert len(json.loads(as_json.stdout)) == 2  # stdout stays one JSON document
    assert b"3 more (of 5)" in as_json.stderr
    everything = ticketd("--config", config, "tickets", "--limit", "5")
    assert b"more" not in everything.stdout + everything.stderr


def test_tickets_and_show_say_who_holds_it_its_group_and_the_next_due_time(
        db_url: str, tmp_path: Path) -> None:
    soon, later = NOW + timedelta(hours=2), NOW + timedelta(hours=20)
    [number] = _seed(db_url, {
        "assignee": "anna@casino.test", "group": "payments",
        "clocks": (("resolution", later, False), ("first_response", soon, False),
                   ("next_response", NOW + timedelta(minutes=5), True))})  # paused: no due time
    config = _config(tmp_path, db_url)
    [listed] = json.loads(ticketd("--config", config, "tickets", "--json").stdout)
    assert (listed["assignee"], listed["group"]) == ("anna@casino.test", "payments")
    assert datetime.fromisoformat(listed["next_due"]) == soon
    line = ticketd("--config", config, "tickets").stdout.decode()
    assert "holder=anna@casino.test group=payments" in line
    assert re.search(rf"due={soon:%Y-%m-%d %H:%M}Z \(in 1h[0-5]\dm\)", line), line
    shown = json.loads(ticketd("--config", config, "show", str(number), "--json").stdout)
    assert (shown["assignee"], shown["group"]) == ("anna@casino.test", "payments")
    assert datetime.fromisoformat(shown["next_due"]) == soon
    human = ticketd("--config", config, "show", str(number)).stdout.decode()
    assert f"held by anna@casino.test, group payments, answer due {soon:%Y-%m-%d %H:%M}Z" in human


def test_tickets_and_show_flag_a_ticket_stopped_as_a_loop(db_url: str, tmp_path: Path) -> None:
    stopped, calm = _seed(db_url, {"subject": "Refund", "loop_stopped_at": NOW},
                          {"subject": "Bonus"})
    config = _config(tmp_path, db_url)
    assert _listed(config, "--loop-stopped") == [stopped]
    line = ticketd("--config", config, "tickets").stdout.decode()
    assert f"LOOP-STOPPED={NOW:%Y-%m-%d %H:%M}Z" in line.splitlines()[1]  # the older one
    human = ticketd("--config", config, "show", str(stopped)).stdout.decode()
    assert "LOOP STOPPED at" in human
    assert "LOOP" not in ticketd("--config", config, "show", str(calm)).stdout.decode()


def test_a_ticket_without_running_clocks_has_no_due_time(db_url: str, tmp_path: Path) -> None:
    [number] = _seed(db_url, {})
    config = _config(tmp_path, db_url)
    [listed] = json.loads(ticketd("--config", config, "tickets", "--json").stdout)
    assert (listed["assignee"], listed["group"], listed["next_due"]) == (None, None, None)
    human = ticketd("--config", config, "show", str(number)).stdout.decode()
    assert "held by nobody, group -, answer due -" in human


# --- search ------------------------------------------------------------------------------


def test_search_finds_subjects_and_message_texts_ranked_with_snippets(
        db_url: str, tmp_path: Path) -> None:
    in_text, in_subject, russian, other = _seed(
        db_url,
        {"subject": "Account question", "text_": "My withdrawal of 200 EUR is still pending "
                                                   "after five days, please check it."},
        {"subject": "Withdrawal pending", "text_": "Nothing has arrived yet."},
        {"subject": "Вопрос", "text_": "Ставка рассчитана неверно, прошу пересчитать."},
        {"subject": "Bonus", "text_": "Where is my welcome bonus?"},
    )
    config = _config(tmp_path, db_url)
    done = ticketd("--config", config, "search", "withdrawal", "pending", "--json")
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)
    assert [h["number"] for h in hits] == [in_subject, in_text]  # a subject hit ranks first
    assert "[withdrawal]" in hits[1]["snippet"].lower() and "[pending]" in hits[1]["snippet"]
    assert hits[1]["subject"] == "Account question"
    ru = json.loads(ticketd("--config", config, "search", "РАССЧИТАНА", "--json").stdout)
    assert [h["number"] for h in ru] == [russian] and "[рассчитана]" in ru[0]["snippet"].lower()
    human = ticketd("--config", config, "search", "bonus").stdout.decode()
    assert human.startswith(f"#{other}  open     Bonus\n") and "[bonus]" in human.lower()
    # Every word must occur; what would be query syntax is only text.
    assert json.loads(ticketd("--config", config, "search", "bonus", "withdrawal",
                              "--json").stdout) == []
    odd = ticketd("--config", config, "search", '"bonus* OR (NEAR', "--json")
    assert odd.returncode == 0, odd.stderr
    assert [h["number"] for h in json.loads(odd.stdout)] == []  # "near" is not in the text
    missing = ticketd("--config", config, "search", "jackpot")
    assert missing.returncode == 0 and missing.stdout == b"" and b"no ticket" in missing.stderr


def test_the_search_index_follows_updates_and_deletes(db_url: str) -> None:
    [number] = _seed(db_url, {"subject": "Deposit", "text_": "card declined twice"})
    engine = db.make_engine(db_url)
    sessions = db.session_factory(engine)
    with sessions.begin() as session:
        session.execute(update(Message).values(subject="Re: Transfer",
                                               visible_text="bank transfer missing"))
        session.execute(update(Ticket).values(subject="Transfer"))
    with sessions() as session:
        assert search.search(session, "declined") == []
        assert search.search(session, "deposit") == []
        assert [h.number for h in search.search(session, "transfer missing")] == [number]
    with sessions.begin() as session:
        session.execute(Message.__table__.delete())
    with sessions() as session:
        assert [(h.number, h.snippet) for h in search.search(session, "transfer")] == [
            (number, "[Transfer]")]  # the subject is left, and nothing of the message
    engine.dispose()


def test_a_common_word_is_ranked_among_its_newest_matches(db_url: str) -> None:
    """Only the newest search.RANKED matches are ranked, so that a common word costs the same
    on a million tickets as on ten thousand: an older ticket, however well it matches, is
    left to a rarer word."""
    engine = db.make_engine(db_url)
    with db.session_factory(engine).begin() as session:
        old = _ticket(session, subject="Old claim", text_="jackpot jackpot jackpot, voucher 77")
        newer = [_ticket(session, subject=f"Bet {i}", text_=f"about the jackpot, bet {i}")
                 for i in range(search.RANKED)]
        best = _ticket(session, subject="Jackpot", text_="jackpot never paid")
    with db.session_factory(engine)() as session:
        common = [h.number for h in search.search(session, "jackpot")]
        assert old not in common  # ranked among all, it would come second
        assert common[0] == best  # a subject match first
        assert common[1:] == newer[:-20:-1]  # equal matches newest first
        [hit] = search.search(session, "jackpot voucher")
        assert hit.number == old and "[voucher]" in hit.snippet
        # A longer list ranks more of the newest matches: here all of them.
        assert old in [h.number for h in search.search(session, "jackpot", limit=200)][:2]
    engine.dispose()


def test_the_search_is_answered_from_the_full_text_index(db_url: str) -> None:
    """The plan names the index, so that the search stays an index lookup on a million
    tickets (bench/search.py measures it)."""
    _seed(db_url, {"subject": "Deposit", "text_": "card declined"})
    engine = db.make_engine(db_url)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # On a table this small a scan is cheaper; forbidding it shows the index fits
            # the query's expression (if it did not, the plan would still be a scan).
            conn.execute(text("SET enable_seqscan = off"))
            plan = "\n".join(search.explain_pg(conn, "card declined"))
            assert "ix_messages_search" in plan and "Seq Scan" not in plan
        else:
            plan = search.explain_sqlite(conn, "card declined")
            # FTS5 answers MATCH from its index (":M" in the index string), newest first
            # (index number 192: by rowid, descending, so that no match beyond the newest
            # RANKED is read); the messages are then fetched by rowid.
            assert plan[1] == "SCAN messages_fts VIRTUAL TABLE INDEX 192:M2", plan
            assert "SEARCH m USING INTEGER PRIMARY KEY (rowid=?)" in plan[2:], plan
    engine.dispose()


# --- show: what the player was told ------------------------------------------------------

ENV = {"TICKETD_SECURITY__SECRET": "k-0123456789abcdef"}


def test_show_prints_the_acknowledgement_exactly_as_the_player_received_it(
        db_url: str, tmp_path: Path) -> None:
    server = SmtpServer(Sink(), free_port()).start()
    try:
        config = _config(tmp_path, db_url, smtp={"host": HOST, "port": server.port,
                                                 "tls": "none"})
        raw = mail(sender="Сергей <sergey@players.test>", subject="Где мой выигрыш?",
                   body="Выигрыш не пришёл.", message_id="<ack-1@players.test>")
        assert ticketd("--config", config, "ingest", stdin=raw, env=ENV).returncode == 0
        sent = ticketd("--config", config, "deliver", "--once", env=ENV)
        assert sent.returncode == 0, sent.stderr
    finally:
        server.stop()
    [received] = [r for r in server.handler.received if "sergey@players.test" in r.rcpt_tos]
    got = message_from_bytes(received.content, policy=default)
    text_got = got.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "Где мой выигрыш?" in text_got  # the template did render something real

    doc = json.loads(ticketd("--config", config, "show", "10001", "--json", env=ENV).stdout)
    [ack] = [m for m in doc["messages"] if m["kind"] == "ack"]
    assert ack["sent"]["text"] == text_got
    assert ack["sent"]["subject"] == str(got["Subject"])
    assert ack["sent"]["to"] == ["sergey@players.test"]
    assert (ack["sent"]["state"], ack["sent"]["accepted"]) == ("sent", ["sergey@players.test"])
    assert ack["sent"]["message_id"] == str(got["Message-ID"]).strip("<>")
    assert ack["sent"] in doc["sent_mail"]

    human = ticketd("--config", config, "show", "10001", env=ENV).stdout.decode()
    block = human.split("--- out ack from support@casino.test", 1)[1]
    assert "sent to sergey@players.test (sent, accepted by sergey@players.test)\n" in block
    assert f"Subject: {got['Subject']}\n{text_got.rstrip()}" in block


def test_mail_to_staff_is_on_the_record_and_marked_as_never_sent_to_the_player(
        db_url: str, tmp_path: Path) -> None:
    [number] = _seed(db_url, {"requester": "sam@players.test"})
    engine = db.make_engine(db_url)
    escalation = mail(sender="support@casino.test", to="lead@casino.test",
                      subject="SLA breached", body="Ticket overdue.\r\nPlease look.",
                      message_id="<esc-1@casino.test>")
    from storage import outbox

    with db.session_factory(engine).begin() as session:
        ticket_id = session.scalar(text("SELECT id FROM tickets"))
        outbox.enqueue(session, raw=escalation, message_id="esc-1@casino.test",
                       envelope_from="support@casino.test", recipients=["lead@casino.test"],
                       kind="escalation", ticket_id=ticket_id)
    engine.dispose()
    config = _config(tmp_path, db_url)
    doc = json.loads(ticketd("--config", config, "show", str(number), "--json").stdout)
    [entry] = doc["sent_mail"]
    assert (entry["kind"], entry["to"], entry["state"]) == (
        "escalation", ["lead@casino.test"], "pending")
    assert entry["text"].rstrip("\n") == "Ticket overdue.\nPlease look."
    human = ticketd("--config", config, "show", str(number)).stdout.decode()
    assert ("--- out escalation at" in human
            and "sent to lead@casino.test (pending) [to staff, never sent to the player]" in human
            and "Ticket overdue.\nPlease look." in human)
    events = json.loads(ticketd("--config", config, "events", "--json",
                                "--kind", "mail_queued").stdout)
    assert [(e["kind"], e["ticket"], e["data"]["kind"]) for e in events] == [
        ("mail_queued", number, "escalation")]
    line = ticketd("--config", config, "events").stdout.decode()
    assert f"mail_queued actor=system ticket=#{number}" in line and "Please look" not in line


# --- events and version ------------------------------------------------------------------


def test_events_json_is_one_document_with_ticket_numbers(sqlite_url: str,
                                                         tmp_path: Path) -> None:
    config = _config(tmp_path, sqlite_url)
    for n in (1, 2):
        raw = mail(subject=f"Question {n}", message_id=f"<ev-{n}@mail.test>")
        assert ticketd("--config", config, "ingest", stdin=raw).returncode == 0
    done = ticketd("--config", config, "events", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert all({"id", "at", "kind", "actor", "ticket", "data"} <= set(r) for r in rows)
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    created = json.loads(ticketd("--config", config, "events", "--json",
                                 "--kind", "created").stdout)
    assert [(r["kind"], r["ticket"]) for r in created] == [("created", 10002), ("created", 10001)]
    one = json.loads(ticketd("--config", config, "events", "--json", "--ticket", "10001").stdout)
    assert one and {r["ticket"] for r in one} == {10001}


def test_a_listing_by_group_and_holder_reads_the_index_of_both(db_url: str) -> None:
    """With an index of one of them only, the other is read from every ticket it holds: the
    listing would slow down as the desk grows (bench/search.py measures it)."""
    _seed(db_url, {"assignee": "anna@casino.test", "group": "payments"})
    engine = db.make_engine(db_url)
    statements: list[tuple[str, object]] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, sql, params, _ctx, _many: statements.append((sql, params)))
    with db.session_factory(engine)() as session:
        wanted = queries.TicketFilter(group="payments", assignee="anna@casino.test")
        assert queries.find_tickets(session, wanted, 50)[1] == 1
    [(sql, params)] = [(s, p) for s, p in statements if "ORDER BY" in s]
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET enable_seqscan = off"))  # a scan is cheaper on one ticket
            plan = [r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql, params)]
        else:
            plan = [r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)]
    assert "ix_tickets_group_assignee_id" in "\n".join(plan), plan
    engine.dispose()


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    done = ticketd("--version")
    assert done.returncode == 0
    assert done.stdout.decode().strip() == f"ticketd, version {version('ticketd')}"


def test_tickets_counts_only_up_to_a_thousand_more(db_url: str, tmp_path: Path) -> None:
    engine = db.make_engine(db_url)
    with db.session_factory(engine).begin() as session:
        who = queries.contact_id(session, "player@mail.test")
        session.execute(Ticket.__table__.insert(), [
            {"number": 50_000 + i, "subject": f"Bet {i}", "requester_id": who}
            for i in range(queries.COUNT_CAP + 10)])
    engine.dispose()
    config = _config(tmp_path, db_url)
    listed = ticketd("--config", config, "tickets", "--limit", "5")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.decode().splitlines()
    assert len(lines) == 6 and lines[0].startswith("#51009")
    assert lines[5] == "... more than 1,000 more; narrow the filters or raise --limit"
    exact = ticketd("--config", config, "tickets", "--limit", "15")
    assert b"... 995 more (of 1010);" in exact.stdout  # within the count: told exactly
