"""Full-text search over ticket subjects and message texts (`ticketd search`).

The indexes are made by migration 0008: FTS5 tables kept by triggers on SQLite, GIN indexes
on to_tsvector('simple', ...) on PostgreSQL. Both answer from the index: the newest
RANKED matches of each source are read in id order (which needs no ranking), only they are
ranked, the best are merged per ticket here, and only the tickets shown get a snippet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, text
from sqlalchemy.orm import Session

from storage.models import Ticket

# Objects autogenerate cannot describe: the FTS5 tables (and the shadow tables FTS5 makes
# for itself) and the expression indexes. Migrations own them; the models do not.
_FTS_TABLES = ("messages_fts", "tickets_fts")
SEARCH_INDEXES = ("ix_messages_search", "ix_tickets_search")

# The indexed expressions, word for word as in migration 0008: PostgreSQL uses an
# expression index only for the same expression.
_PG_MESSAGE_VECTOR = ("to_tsvector('simple'::regconfig, "
                      "left(m.subject || ' ' || m.visible_text, 200000))")
_PG_TICKET_VECTOR = "to_tsvector('simple'::regconfig, t.subject)"

# A subject that matches says more about a ticket than one word somewhere in a long mail.
_SUBJECT_WEIGHT = 2.0
# Ranking reads every match it ranks: all of them would cost a common word in proportion to
# the desk (1,000 matches on a million tickets for a word in 1 ticket of 1,000). The newest
# RANKED matches of the subjects and of the messages are ranked instead, so a search costs
# the same on a million tickets as on ten thousand; an older ticket is found by adding a
# rarer word.
RANKED = 100
_MARK = ("[", "]")


def include_object(obj: Any, name: str | None, type_: str, reflected: bool,
                   compare_to: Any) -> bool:
    """Alembic's filter: leave the search objects to the migrations that made them."""
    if type_ == "table" and name and name.startswith(_FTS_TABLES):
        return False
    return not (type_ == "index" and name in SEARCH_INDEXES)


@dataclass(frozen=True)
class Hit:
    """One ticket found: its best match first."""

    ticket_id: int
    number: int
    subject: str
    status: str
    score: float  # higher is better; comparable within one search only
    snippet: str  # the matching words between [ and ]


def words(query: str) -> list[str]:
    """The words of what the user typed; every one of them must occur (no query syntax:
    quotes, stars and operators are text, so nothing typed can break the search)."""
    return [w for w in re.findall(r"\w+", query.casefold()) if w][:16]


def search(session: Session, query: str, limit: int = 20) -> list[Hit]:
    """Tickets whose subject or messages contain every word of ``query``, best first."""
    terms = words(query)
    if not terms:
        return []
    conn = session.connection()
    pg = conn.dialect.name == "postgresql"
    found = _pg_hits(conn, terms, limit) if pg else _sqlite_hits(conn, terms, limit)
    best: dict[int, tuple[float, int | None, str]] = {}
    for ticket_id, message_id, score, snippet in found:
        if ticket_id not in best or score > best[ticket_id][0]:
            best[ticket_id] = (score, message_id, snippet)
    ranked = sorted(best.items(), key=lambda item: (-item[1][0], -item[0]))[:limit]
    if not ranked:
        return []
    tickets = _tickets(conn, [ticket_id for ticket_id, _ in ranked])
    snippets = _pg_snippets(conn, terms, ranked) if pg else _sqlite_snippets(conn, terms, ranked)
    return [Hit(tid, *tickets[tid], score, snippets.get(tid, snippet))
            for tid, (score, _mid, snippet) in ranked if tid in tickets]


# --- SQLite: FTS5 ---------------------------------------------------------------------


def fts5_query(terms: list[str]) -> str:
    """Each word as an FTS5 string, so that no word is read as an operator."""
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


# FTS5 reads a match's rowids newest first without ranking (ORDER BY rowid DESC); bm25 then
# runs on those only. (Its word weights still count each word's matches in the index: fast
# even for a word in every ticket, but not free.)
_SQLITE_MESSAGES = text(
    "SELECT m.ticket_id, m.id, c.score, '' FROM (SELECT rowid AS id, -bm25(messages_fts) "
    "AS score FROM messages_fts WHERE messages_fts MATCH :q ORDER BY rowid DESC "
    "LIMIT :ranked) AS c JOIN messages m ON m.id = c.id ORDER BY c.score DESC, c.id DESC "
    "LIMIT :n")
_SQLITE_TICKETS = text(
    "SELECT c.id, NULL, c.score, '' FROM (SELECT rowid AS id, -bm25(tickets_fts) AS score "
    "FROM tickets_fts WHERE tickets_fts MATCH :q ORDER BY rowid DESC LIMIT :ranked) AS c "
    "ORDER BY c.score DESC, c.id DESC LIMIT :n")
_SQLITE_MESSAGE_SNIPPETS = text(
    "SELECT rowid, snippet(messages_fts, -1, '[', ']', '…', 12) FROM messages_fts "
    "WHERE messages_fts MATCH :q AND rowid IN :ids").bindparams(bindparam("ids", expanding=True))
_SQLITE_SUBJECT_SNIPPETS = text(
    "SELECT rowid, snippet(tickets_fts, 0, '[', ']', '…', 12) FROM tickets_fts "
    "WHERE tickets_fts MATCH :q AND rowid IN :ids").bindparams(bindparam("ids", expanding=True))


def _sqlite_hits(conn: Connection, terms: list[str], limit: int) -> list[tuple[Any, ...]]:
    # Several messages of one ticket may be among the best: take more than asked for.
    params = {"q": fts5_query(terms), "n": limit * 5, "ranked": max(RANKED, limit * 5)}
    hits = [tuple(r) for r in conn.execute(_SQLITE_MESSAGES, params)]
    hits += [(r[0], r[1], r[2] * _SUBJECT_WEIGHT, r[3])
             for r in conn.execute(_SQLITE_TICKETS, params)]
    return hits


def _sqlite_snippets(conn: Connection, terms: list[str],
                     ranked: list[tuple[int, tuple[float, int | None, str]]]) -> dict[int, str]:
    """snippet() reads the whole text: only for the tickets shown, from the message or the
    subject that matched best."""
    q = fts5_query(terms)
    by_message = {mid: tid for tid, (_score, mid, _snippet) in ranked if mid is not None}
    by_subject = [tid for tid, (_score, mid, _snippet) in ranked if mid is None]
    snippets: dict[int, str] = {}
    if by_message:
        for mid, snippet in conn.execute(_SQLITE_MESSAGE_SNIPPETS,
                                         {"q": q, "ids": list(by_message)}):
            snippets[by_message[mid]] = snippet
    if by_subject:
        snippets.update(tuple(r) for r in conn.execute(_SQLITE_SUBJECT_SNIPPETS,
                                                         {"q": q, "ids": by_subject}))
    return snippets


def explain_sqlite(conn: Connection, query: str) -> list[str]:
    """The plan SQLite makes for the message search (bench and tests show it)."""
    sql = "EXPLAIN QUERY PLAN " + str(_SQLITE_MESSAGES)
    params = {"q": fts5_query(words(query)), "n": 100, "ranked": RANKED}
    return [r[-1] for r in conn.execute(text(sql), params)]


# --- PostgreSQL: tsvector and GIN ------------------------------------------------------


def _tsquery(terms: list[str]) -> str:
    # to_tsquery of words joined by &: each word quoted as a lexeme, nothing else parsed.
    return " & ".join("'" + term.replace("'", "''").replace("\\", "\\\\") + "'" for term in terms)


# ts_rank parses each text it ranks again: the GIN index finds the matches, the newest
# RANKED of them are picked by id (a sort of ids, no text read), and only those are parsed.
# OFFSET 0 keeps the LIMIT out of the scan: else, for a word its statistics call rare but
# that no recent row holds, the planner walks the primary key backwards and parses every
# row until it finds RANKED matches (a whole table for a word that is nowhere).
_PG_MESSAGES = text(
    f"SELECT m.ticket_id, m.id, ts_rank({_PG_MESSAGE_VECTOR}, q) AS score, '' "
    f"FROM (SELECT h.id FROM (SELECT m.id FROM messages m WHERE {_PG_MESSAGE_VECTOR} @@ "
    "to_tsquery('simple', :q) OFFSET 0) AS h ORDER BY h.id DESC LIMIT :ranked) AS c "
    "JOIN messages m ON m.id = c.id, "
    "to_tsquery('simple', :q) AS q ORDER BY score DESC, m.id DESC LIMIT :n")
_PG_TICKETS = text(
    f"SELECT t.id, NULL, ts_rank({_PG_TICKET_VECTOR}, q) AS score, "
    "ts_headline('simple', t.subject, q, 'StartSel=[, StopSel=], HighlightAll=true') "
    f"FROM (SELECT h.id FROM (SELECT t.id FROM tickets t WHERE {_PG_TICKET_VECTOR} @@ "
    "to_tsquery('simple', :q) OFFSET 0) AS h ORDER BY h.id DESC LIMIT :ranked) AS c "
    "JOIN tickets t ON t.id = c.id, "
    "to_tsquery('simple', :q) AS q ORDER BY score DESC, t.id DESC LIMIT :n")
_PG_SNIPPET = text(
    "SELECT ts_headline('simple', left(m.visible_text, 200000), to_tsquery('simple', :q), "
    "'StartSel=[, StopSel=], MaxWords=24, MinWords=8, MaxFragments=1, FragmentDelimiter=…') "
    "FROM messages m WHERE m.id = :mid")


def _pg_hits(conn: Connection, terms: list[str], limit: int) -> list[tuple[Any, ...]]:
    params = {"q": _tsquery(terms), "n": limit * 5, "ranked": max(RANKED, limit * 5)}
    hits = [tuple(r) for r in conn.execute(_PG_MESSAGES, params)]
    hits += [(r[0], r[1], r[2] * _SUBJECT_WEIGHT, r[3]) for r in conn.execute(_PG_TICKETS, params)]
    return hits


def _pg_snippets(conn: Connection, terms: list[str],
                 ranked: list[tuple[int, tuple[float, int | None, str]]]) -> dict[int, str]:
    """ts_headline reads the whole text: only for the tickets shown, and only for a hit in a
    message (a subject hit carries its headline already)."""
    q = _tsquery(terms)
    return {tid: conn.execute(_PG_SNIPPET, {"q": q, "mid": mid}).scalar_one()
            for tid, (_score, mid, _snippet) in ranked if mid is not None}


def explain_pg(conn: Connection, query: str) -> list[str]:
    """The plan PostgreSQL makes for the message search (bench and tests show it)."""
    sql = "EXPLAIN " + str(_PG_MESSAGES)
    params = {"q": _tsquery(words(query)), "n": 100, "ranked": RANKED}
    return [r[0] for r in conn.execute(text(sql), params)]


_TICKETS = select(Ticket.id, Ticket.number, Ticket.subject, Ticket.status).where(
    Ticket.id.in_(bindparam("ids", expanding=True)))


def _tickets(conn: Connection, ids: list[int]) -> dict[int, tuple[int, str, str]]:
    return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(_TICKETS, {"ids": ids})}


def forget_removed_text(session: Session) -> None:
    """Make the search index drop the words of rows changed or deleted in this transaction
    (erasure, anonymisation). FTS5 only marks them deleted and keeps them in its segments
    until a merge: 'optimize' merges everything now. It costs in proportion to the index,
    so it is for rare acts, not for every write. PostgreSQL's GIN indexes never return a
    removed row; the old entries leave the disk with VACUUM."""
    if session.get_bind().dialect.name != "sqlite":
        return
    for table in _FTS_TABLES:
        session.execute(text(f"INSERT INTO {table}({table}) VALUES ('optimize')"))
