"""The retention sweep on SQLite and PostgreSQL: it removes exactly what its rules say as the
clock moves (rows and files), leaves held records and shared files alone, writes an event
with its counts, and does nothing when run again. Each test runs with files in clear and with
encryption at rest (files sealed and named by HMAC(data key, sha256)): the sweep finds the
sealed files by the key of each swept row."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from daemon.ingest import Ingestor
from daemon.retention import (
    TRASH_GRACE,
    KeeperPlan,
    RecordsKeeper,
    RetentionSweeper,
    SweepCounts,
)
from storage import audit, db, search
from storage.crypto import DataKey
from storage.models import (
    Base,
    Contact,
    Event,
    IngestRecord,
    Message,
    OutboxMessage,
    Participant,
    StoredAttachment,
    Ticket,
)
from tests.records.desk import (
    ANNA_QUOTED,
    MASTER_KEY,
    POLICY,
    RULES,
    STATEMENT,
    Desk,
    _ticket,
    build,
    sent_text_of,
)


@pytest.fixture(params=["clear", "sealed"])
def desk(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Desk:
    return build(db_url, tmp_path / "state", MASTER_KEY if request.param == "sealed" else None)


@pytest.fixture
def sweeper(desk: Desk) -> RetentionSweeper:
    return RetentionSweeper(desk.sessions, desk.blobs, RULES)


def _swept(counts: SweepCounts) -> dict[str, int]:
    return {k: v for k, v in vars(counts).items() if v and not k.startswith("files_")}


def _raw_removed(desk: Desk) -> set[str]:
    with desk.sessions() as session:
        gone = set(session.scalars(select(IngestRecord.raw_sha256)
                                   .where(IngestRecord.raw_removed_at.is_not(None))))
    return {name for name, digest in desk.raw.items() if digest in gone}


def _sent_cleared(desk: Desk) -> set[str]:
    with desk.sessions() as session:
        rows = dict(session.execute(select(OutboxMessage.id, OutboxMessage.raw)).all())
    return {name for name, row in desk.sent.items() if rows[row] == b""}


def _files_of_unswept_rows(desk: Desk) -> set[Path]:
    """The file of every raw mail and attachment row not swept (and the attachments of an
    unswept mail that became no message), named as the store names them."""
    vault = db.vault_of_factory(desk.sessions)
    with desk.sessions() as session:
        def key(key_id: int | None) -> DataKey | None:
            return None if key_id is None else vault.key(session, key_id)

        raw = session.execute(select(IngestRecord.raw_sha256, IngestRecord.key_id,
                                     IngestRecord.message_id)
                              .where(IngestRecord.raw_removed_at.is_(None),
                                     IngestRecord.raw_size > 0)).all()
        files = {desk.blobs.raw_path(digest, key(key_id)) for digest, key_id, _ in raw}
        files |= {desk.blobs.attachment_path(digest, key(key_id)) for digest, key_id in
                  session.execute(select(StoredAttachment.sha256, Message.key_id).join(Message)
                                  .where(StoredAttachment.removed_at.is_(None)))}
        if any(digest == desk.raw["robot"] for digest, _, _ in raw):
            files.add(desk.blobs.attachment_path(desk.attachments["robot/invoice.pdf"],
                                                 key(desk.key_ids["robot/invoice.pdf"])))
    return files


def test_the_sweep_removes_what_its_rules_say_and_nothing_held(desk, sweeper) -> None:
    before = desk.stored_files()
    assert before == _files_of_unswept_rows(desk)
    assert all(p.name.endswith(".sealed") for p in before) == desk.sealed
    counts = sweeper.run_once(desk.now)
    assert _swept(counts) == {"raw_mail": 3, "rejected_mail": 2, "attachments": 1,
                              "sent_mail": 1, "closed_tickets": 2, "contacts": 1}
    assert _raw_removed(desk) == {"anna", "boris", "boris_old", "robot", "spam"}
    assert [n for n in desk.raw if desk.raw_on_disk(n)] == ["dora", "carl"]
    # Listing the store: no file of a swept row is left, every file of a kept row is there
    assert desk.stored_files() == _files_of_unswept_rows(desk) < before
    # anna's passport row is swept. In clear, dora's held ticket refers to the same file;
    # sealed, dora's copy is another file (her key), and anna's goes.
    assert desk.attachment_on_disk("anna/passport.pdf") == (not desk.sealed)
    assert desk.attachment_on_disk("dora/passport.pdf")
    assert desk.attachment_on_disk("boris/statement.pdf") and desk.attachment_on_disk(
        "carl/screen.pdf")
    assert not desk.attachment_on_disk("robot/invoice.pdf")  # found in the ignored mail
    assert _sent_cleared(desk) == {"old"}
    # The text of a cleared mail goes from the ticket's history too; the others' stays.
    assert _queued_texts(desk) == {"new", "held", "pending"}


def _queued_texts(desk: Desk) -> set[str]:
    """The names (desk.sent) whose text a mail_queued event still holds."""
    with desk.sessions() as session:
        texts = {d.get("text", "").strip() for d in session.scalars(
            select(Event.data).where(Event.kind == "mail_queued"))}
    return {name for name in desk.sent if sent_text_of(name) in texts}


def _everything(desk: Desk) -> str:
    """Every value of every table, as one text to search."""
    with desk.sessions() as session:
        return "\n".join(str(row) for table in Base.metadata.sorted_tables
                         for row in session.execute(table.select()).all())


def test_nothing_of_an_anonymised_player_is_left_in_the_database_and_the_chain_holds(
        desk, sweeper) -> None:
    audit.seal(desk.sessions)  # their events are sealed: redaction must keep the chain whole
    before = _everything(desk)
    assert "anna@players.test" in before and "the text only anna wrote" in before
    assert ANNA_QUOTED in before  # an escalation quoted her, without her address
    sweeper.run_once(desk.now)
    after = _everything(desk)
    for trace in ("anna@players.test", "Anna", "the text only anna wrote",
                  "the text only boris_old wrote", ANNA_QUOTED):
        assert trace not in after
    assert "dora@players.test" in after and "the text only dora wrote" in after  # held
    with desk.sessions() as session:  # nor can the full-text search find them
        assert search.search(session, "Anna") == [] and search.search(session, "boris_old") == []
        assert search.search(session, "dora")
    audit.seal(desk.sessions)
    with desk.sessions() as session:
        verdict = audit.verify(session)
    assert verdict.broken is None and verdict.redacted >= 2


def test_a_closed_ticket_is_anonymised_and_its_contact_once_nothing_of_theirs_is_left(
        desk, sweeper) -> None:
    sweeper.run_once(desk.now)
    anna, dora = desk.tickets["anna"], desk.tickets["dora"]
    with desk.sessions() as session:
        ticket = session.get(Ticket, anna)
        assert ticket is not None and ticket.subject == "" and ticket.anonymised_at is not None
        texts = session.execute(select(Message.sender, Message.sender_name, Message.subject,
                                       Message.visible_text, Message.full_text)
                                .where(Message.ticket_id == anna)).all()
        assert texts and all(value == "" for row in texts for value in row)
        names = session.scalars(select(StoredAttachment.filename).join(Message)
                                .where(Message.ticket_id == anna)).all()
        assert names and all(n.startswith("attachment-") for n in names)
        people = session.scalars(select(Participant.address)
                                 .where(Participant.ticket_id == anna)).all()
        assert people and all(p.endswith("@anonymised.invalid") for p in people)
        addresses = set(session.scalars(select(Contact.address)))
        # anna had one ticket: gone; boris keeps his address (his open ticket); dora is held
        assert "anna@players.test" not in addresses
        assert {"boris@players.test", "dora@players.test", "carl@players.test"} <= addresses
        held = session.get(Ticket, dora)
        assert held is not None and held.subject == "Dora's bonus" and held.anonymised_at is None
        boris_old = session.get(Ticket, desk.tickets["boris_old"])
        assert boris_old is not None and boris_old.anonymised_at is not None


def test_a_second_run_changes_nothing_and_each_run_leaves_an_event(desk, sweeper) -> None:
    sweeper.run_once(desk.now)
    assert _swept(sweeper.run_once(desk.now)) == {}
    with desk.sessions() as session:
        swept = session.scalars(select(Event.data).where(Event.kind == "retention_swept")
                                .order_by(Event.id)).all()
    assert [d["closed_tickets"] for d in swept] == [2, 0]
    assert swept[0]["raw_mail"] == 3 and swept[0]["as_of"] == desk.now.isoformat()


def test_moving_the_clock_sweeps_what_has_aged_since_then_empties_the_trash(desk, sweeper) -> None:
    first = sweeper.run_once(desk.now)
    # The files wait out the grace in the trash (a mail with the same bytes may be on its way
    # in); sealed, anna's passport is hers alone and goes too
    trashed = 7 if desk.sealed else 6
    assert first.files_removed == 0 and len(sweeper.trash.entries()) == trashed
    if desk.sealed:  # the trash does not show the digests of what it holds either
        names = " ".join(e.path.name for e in sweeper.trash.entries())
        assert not any(d in names for d in (*desk.raw.values(), *desk.attachments.values()))
    later = desk.now + timedelta(days=10)
    counts = sweeper.run_once(later)
    assert _swept(counts) == {"raw_mail": 1, "attachments": 1, "sent_mail": 1}
    assert _raw_removed(desk) == {"anna", "boris", "boris_old", "robot", "spam", "carl"}
    assert not desk.attachment_on_disk("boris/statement.pdf")  # 25 days old now
    assert desk.attachment_on_disk("carl/screen.pdf")  # 12 days
    assert _sent_cleared(desk) == {"old", "new"}  # not the held one, not the pending one
    # ... which a sweep as of TRASH_GRACE later (here: ten days) has deleted
    assert later.timestamp() - desk.now.timestamp() > TRASH_GRACE
    assert counts.files_removed == trashed + 2 and sweeper.trash.entries() == []
    assert desk.stored_files() == _files_of_unswept_rows(desk)


def test_a_released_hold_lets_the_next_sweep_take_what_it_kept(desk, sweeper) -> None:
    from storage import holds

    sweeper.run_once(desk.now)
    with desk.sessions.begin() as session:
        dora = session.scalar(select(Ticket.requester_id)
                              .where(Ticket.id == desk.tickets["dora"]))
        assert holds.release(session, contact_id=dora, by="mlro@casino.test") == 1
    counts = sweeper.run_once(desk.now)
    assert _swept(counts) == {"raw_mail": 1, "attachments": 1, "sent_mail": 1,
                              "closed_tickets": 1, "contacts": 1}
    assert not desk.attachment_on_disk("dora/passport.pdf")  # nobody refers to it now
    assert desk.stored_files() == _files_of_unswept_rows(desk)


def test_a_file_one_contact_sent_twice_stays_while_one_of_their_rows_is_kept(
        desk, sweeper) -> None:
    """boris sends his statement again on a ticket now 40 days old: that attachment row is
    swept, his 15-day-old one is not, and both name one file (his key, sealed or not)."""
    _ticket(desk, Ingestor(desk.sessions, desk.blobs, POLICY), "boris_again", 40,
            "Boris <boris@players.test>", "Boris, again", ("statement.pdf", STATEMENT))
    assert desk.key_ids["boris_again/statement.pdf"] == desk.key_ids["boris/statement.pdf"]
    counts = sweeper.run_once(desk.now)
    assert counts.attachments == 2  # anna's passport and boris's second statement
    assert desk.attachment_on_disk("boris/statement.pdf")
    assert desk.stored_files() == _files_of_unswept_rows(desk)


def test_a_trashed_file_an_unswept_row_names_is_put_back(desk, sweeper) -> None:
    """What a sweep killed before its commit leaves: a file in the trash whose row is not
    marked. The next sweep puts it back where the store (sealed: by its key) looks for it."""
    assert sweeper.trash.condemn("raw", [(desk.raw["carl"], desk.key("carl"))]) == 1
    assert not desk.raw_on_disk("carl")
    counts = SweepCounts()
    sweeper.settle(desk.now, counts)
    assert counts.files_restored == 1 and sweeper.trash.entries() == []
    assert desk.raw_on_disk("carl")
    assert b"the text only carl wrote" in desk.blobs.get_raw(desk.raw["carl"], desk.key("carl"))


def test_a_dry_run_counts_and_changes_nothing(desk, sweeper) -> None:
    counts = sweeper.run_once(desk.now, apply=False)
    assert _swept(counts) == {"raw_mail": 3, "rejected_mail": 2, "attachments": 1,
                              "sent_mail": 1, "closed_tickets": 2}
    assert _raw_removed(desk) == set() and _sent_cleared(desk) == set()
    assert all(desk.raw_on_disk(n) for n in desk.raw)


def test_the_daemon_task_seals_new_events_and_sweeps_once_an_interval(desk) -> None:
    sweeper = RetentionSweeper(desk.sessions, desk.blobs, RULES)
    keeper = RecordsKeeper(desk.sessions, lambda: KeeperPlan(sweeper, seal_every=0.05,
                                                             sweep_every=3600))

    def state() -> tuple[int, int]:
        with desk.sessions() as session:
            sweeps = session.scalar(select(func.count()).select_from(Event)
                                    .where(Event.kind == "retention_swept"))
            return sweeps or 0, audit.verify(session).unsealed

    async def run_until_settled() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(keeper.run(stop))
        for _ in range(300):  # a few passes at least; at most half a minute on a slow machine
            await asyncio.sleep(0.1)
            if state() == (1, 0):
                break
        await asyncio.sleep(0.3)  # more passes: still one sweep an interval
        stop.set()
        await task

    assert state()[1] > 0
    asyncio.run(run_until_settled())
    assert state() == (1, 0)
    assert _raw_removed(desk) == {"anna", "boris", "boris_old", "robot", "spam"}
