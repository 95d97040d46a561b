"""SLA clocks in the database: start, stop, pause, resume, the due query, the stage step.

Each function runs inside the caller's transaction and takes the instants it writes as
arguments: the working-time arithmetic (responders.sla) is done by the caller, since
storage imports nothing to its right (DESIGN.md, "Imports follow the data").

Exactly once (invariant 6): a stage moves only by `advance`, an UPDATE that names the stage
it moves from. Whoever commits first wins; a second monitor's UPDATE matches no row (on
PostgreSQL it waits for the first to commit, then re-reads), so it writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.models import SLA_KINDS, Message, SlaClock, Ticket

__all__ = [
    "Clock", "DueClock", "EscalationFacts", "active_clocks", "advance", "advance_many",
    "due_clocks", "escalation_facts", "escalation_facts_of", "explain_due", "insert_clock", "lock_clock", "mark_paused", "mark_resumed",
    "open_clocks", "stop_clock", "stop_clocks", "ticket_policy_facts",
]


@dataclass(frozen=True)
class Clock:
    """A clock as the monitor and the lifecycle functions read it."""

    id: int
    ticket_id: int
    kind: str
    policy: str
    stage: int
    started_at: datetime
    due_at: datetime | None
    warn_at: datetime | None
    remaining: timedelta
    paused_at: datetime | None
    next_action_at: datetime | None


DueClock = Clock  # what due_clocks returns: a clock whose next action has come


_T = SlaClock.__table__
_C = _T.c
_COLUMNS = (_C.id, _C.ticket_id, _C.kind, _C.policy, _C.stage, _C.started_at, _C.due_at,
            _C.warn_at, _C.remaining, _C.paused_at, _C.next_action_at)
_RUNNING = _C.stopped_at.is_(None)

# The monitor's query, run every pass: constant, compiled once. `next_action_at IS NOT NULL`
# is the predicate of the partial index, written out so that both planners pick it.
# SKIP LOCKED passes over clocks another monitor holds right now; SQLite drops the clause
# (BEGIN IMMEDIATE serialises writers there).
_DUE = (
    select(*_COLUMNS)
    .where(_C.next_action_at.is_not(None), _C.next_action_at <= bindparam("now"), _RUNNING)
    .order_by(_C.next_action_at)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(skip_locked=True)
)
# No SKIP LOCKED here: a clock in our batch that another monitor holds is being fetched or
# handled by it; waiting the few milliseconds and reading what it did is what keeps a clock
# from being skipped by both.
_LOCK = (
    select(*_COLUMNS)
    .where(_C.id == bindparam("cid"), _RUNNING, _C.paused_at.is_(None))
    .with_for_update()
)
# A breach is remembered as the due time it missed, once, whoever records it first.
def _breached(to_stage: Any) -> Any:
    return case((to_stage >= 2, func.coalesce(_C.breached_at, _C.due_at)), else_=_C.breached_at)


_TO_STAGE = bindparam("to_stage", type_=Integer)
_BREACHED = _breached(_TO_STAGE)
_ADVANCE = (
    update(_T)
    .where(_C.id == bindparam("cid"), _C.stage == bindparam("from_stage"), _RUNNING,
           _C.paused_at.is_(None))
    .values(stage=_TO_STAGE, next_action_at=bindparam("next_at"),
            breached_at=_BREACHED)
)
# PostgreSQL: `_ADVANCE` for many clocks in one statement, the moves as one array per
# column: a few hundred values to send rather than a few hundred statements to pipeline.
_MOVES = func.unnest(
    bindparam("cids", type_=postgresql.ARRAY(Integer)),
    bindparam("froms", type_=postgresql.ARRAY(Integer)),
    bindparam("tos", type_=postgresql.ARRAY(Integer)),
    bindparam("nexts", type_=postgresql.ARRAY(_C.next_action_at.type)),
).table_valued("cid", "from_stage", "to_stage", "next_at").render_derived()
_ADVANCE_UNNESTED = (
    update(_T)
    .where(_C.id == _MOVES.c.cid, _C.stage == _MOVES.c.from_stage, _RUNNING,
           _C.paused_at.is_(None))
    .values(stage=_MOVES.c.to_stage, next_action_at=_MOVES.c.next_at,
            breached_at=_breached(_MOVES.c.to_stage))
)
_STOP = (
    update(_T)
    .where(_C.ticket_id == bindparam("tid"), _C.kind.in_(bindparam("kinds", expanding=True)),
           _RUNNING)
    .values(stopped_at=bindparam("now"), next_action_at=None,
            breached_at=case((_C.due_at <= bindparam("now"),
                              func.coalesce(_C.breached_at, _C.due_at)),
                             else_=_C.breached_at))
)
# Ingest starts clocks for every new ticket: one constant statement per dialect. A clock
# already running (the partial unique index) makes it a no-op, e.g. when ingest retries.
_INSERT = {
    name: insert_(_T).on_conflict_do_nothing(index_elements=["ticket_id", "kind"],
                                             index_where=_RUNNING).returning(_C.id)
    for name, insert_ in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
_OPEN = select(*_COLUMNS).where(_C.ticket_id == bindparam("tid"), _RUNNING).order_by(_C.id)


def _clock(row: object) -> Clock:
    values = dict(row._mapping)  # type: ignore[attr-defined]
    values["remaining"] = timedelta(seconds=values["remaining"])
    return Clock(**values)


def insert_clock(session: Session, *, ticket_id: int, kind: str, policy: str, now: datetime,
                 due_at: datetime, warn_at: datetime, remaining: timedelta) -> bool:
    """Start a clock; False (and nothing written) when one of this kind is already running."""
    if kind not in SLA_KINDS:
        raise ValueError(f"unknown SLA clock kind {kind!r}")
    dialect = session.get_bind().dialect.name
    done = session.execute(_INSERT[dialect], {
        "ticket_id": ticket_id, "kind": kind, "policy": policy, "started_at": now,
        "due_at": due_at, "warn_at": warn_at, "remaining": int(remaining.total_seconds()),
        "stage": 0, "next_action_at": min(warn_at, due_at),
    }).first()
    return done is not None


def stop_clock(session: Session, ticket_id: int, kind: str, now: datetime) -> bool:
    """Stop the running clock of this kind (an agent answered, the ticket was resolved)."""
    return stop_clocks(session, ticket_id, now, (kind,)) == 1


def stop_clocks(session: Session, ticket_id: int, now: datetime,
                kinds: tuple[str, ...] = SLA_KINDS) -> int:
    """Stop the ticket's running clocks of these kinds; how many were running."""
    return session.execute(_STOP, {"tid": ticket_id, "kinds": list(kinds), "now": now}).rowcount


def open_clocks(session: Session, ticket_id: int) -> list[Clock]:
    """The ticket's clocks not stopped, running or paused."""
    return [_clock(row) for row in session.execute(_OPEN, {"tid": ticket_id})]


def mark_paused(session: Session, clock_id: int, now: datetime, remaining: timedelta) -> bool:
    """Pause a running clock, keeping the working time it still owes."""
    return session.execute(
        update(_T).where(_C.id == clock_id, _RUNNING, _C.paused_at.is_(None)).values(
            paused_at=now, remaining=int(remaining.total_seconds()), due_at=None,
            warn_at=None, next_action_at=None)
    ).rowcount == 1


def mark_resumed(session: Session, clock: Clock, *, due_at: datetime, warn_at: datetime,
                 next_action_at: datetime | None) -> bool:
    """Run a paused clock again; False when it was resumed or stopped meanwhile."""
    return session.execute(
        update(_T).where(_C.id == clock.id, _RUNNING, _C.paused_at == clock.paused_at).values(
            paused_at=None, due_at=due_at, warn_at=warn_at, next_action_at=next_action_at)
    ).rowcount == 1


def due_clocks(session: Session, now: datetime, limit: int) -> list[DueClock]:
    """Clocks whose next action has come, oldest first: one range scan of the partial index."""
    return [_clock(row) for row in session.execute(_DUE, {"now": now, "limit": limit})]


def explain_due(session: Session, now: datetime, limit: int) -> list[str]:
    """The plan of the due query as the database would run it: for the bench and the tests
    that check it stays one scan of the partial index."""
    conn = session.connection()
    compiled = _DUE.compile(dialect=conn.dialect)
    params = compiled.construct_params(
        {"now": now.astimezone(UTC).replace(tzinfo=None).isoformat(" "), "limit": limit})
    if conn.dialect.name == "sqlite":
        args = tuple(params[name] for name in compiled.positiontup or ())
        return [str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}",
                                                             args)]
    return [row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}", params)]


def lock_clock(session: Session, clock_id: int) -> Clock | None:
    """The clock as it is now, locked for this transaction on PostgreSQL (after waiting for
    a transaction that holds it); None when it is stopped or paused."""
    row = session.execute(_LOCK, {"cid": clock_id}).first()
    return _clock(row) if row is not None else None


def advance(session: Session, clock_id: int, from_stage: int, to_stage: int,
            next_action_at: datetime | None) -> bool:
    """Move a clock from `from_stage` to `to_stage`; False when it is no longer at
    `from_stage` (another monitor did it) or was stopped or paused: write nothing then."""
    return session.execute(_ADVANCE, {
        "cid": clock_id, "from_stage": from_stage, "to_stage": to_stage, "next_at": next_action_at,
    }).rowcount == 1


def advance_many(session: Session,
                 moves: list[tuple[int, int, int, datetime | None]]) -> bool:
    """`advance` for many clocks (clock id, from stage, to stage, next action) in one
    statement (an executemany on SQLite); False, with some of them moved, when any one was
    not at its stage: the caller rolls back."""
    if not moves:
        return True
    if len(moves) > 1 and session.get_bind().dialect.name == "postgresql":
        ids, froms, tos, nexts = (list(column) for column in zip(*moves, strict=True))
        done = session.execute(_ADVANCE_UNNESTED, {"cids": ids, "froms": froms, "tos": tos,
                                                   "nexts": nexts})
        return done.rowcount == len(moves)
    done = session.execute(_ADVANCE, [
        {"cid": cid, "from_stage": from_stage, "to_stage": to_stage, "next_at": next_at}
        for cid, from_stage, to_stage, next_at in moves])
    return done.rowcount == len(moves)


@dataclass(frozen=True)
class EscalationFacts:
    """What an escalation mail says about its ticket, and what decides where it goes."""

    number: int
    subject: str
    category: str
    group: str | None  # the team it is routed to; None: by its category
    assignee: str | None  # an agent's address; None: nobody holds it
    question: str  # the visible text of the player's first message
    brand: str = "default"  # whose name the escalation goes out in


_FIRST_TEXT = (
    select(Message.visible_text)
    .where(Message.ticket_id == Ticket.id, Message.direction == "in")
    .order_by(Message.id)
    .limit(1)
    .scalar_subquery()
)
_FACTS = select(Ticket.number, Ticket.subject, Ticket.category, Ticket.group, Ticket.assignee,
                _FIRST_TEXT, Ticket.brand).where(Ticket.id == bindparam("tid"))


def escalation_facts(session: Session, ticket_id: int) -> EscalationFacts:
    number, subject, category, group, assignee, question, brand = session.execute(
        _FACTS, {"tid": ticket_id}).one()
    return EscalationFacts(number, subject or "", category, group, assignee, question or "",
                           brand)


_FACTS_OF = select(Ticket.id, Ticket.number, Ticket.subject, Ticket.category, Ticket.group,
                   Ticket.assignee, _FIRST_TEXT, Ticket.brand).where(
    Ticket.id.in_(bindparam("tids", expanding=True)))


def escalation_facts_of(session: Session, ticket_ids: list[int]) -> dict[int, EscalationFacts]:
    """`escalation_facts` of many tickets in one query, by ticket id."""
    if not ticket_ids:
        return {}
    return {tid: EscalationFacts(number, subject or "", category, group, assignee,
                                 question or "", brand)
            for tid, number, subject, category, group, assignee, question, brand
            in session.execute(_FACTS_OF, {"tids": ticket_ids})}


def ticket_policy_facts(session: Session, ticket_id: int) -> tuple[str, str, bool]:
    """(category, priority, appealed) of a ticket: what picks its SLA policy."""
    row = session.execute(select(Ticket.category, Ticket.priority, Ticket.appeal_requested_at)
                          .where(Ticket.id == ticket_id)).one()
    return row[0], row[1], row[2] is not None


@dataclass(frozen=True)
class ClockRow:
    """A running or paused clock as `ticketd sla status` shows it."""

    ticket: int
    kind: str
    policy: str
    stage: int
    started_at: datetime
    due_at: datetime | None
    remaining: timedelta
    paused_at: datetime | None
    next_action_at: datetime | None
    breached_at: datetime | None


def active_clocks(session: Session, limit: int = 200) -> list[ClockRow]:
    """Clocks not stopped, the next to act first, paused and finished ones last."""
    rows = session.execute(
        select(Ticket.number, _C.kind, _C.policy, _C.stage, _C.started_at, _C.due_at,
               _C.remaining, _C.paused_at, _C.next_action_at, _C.breached_at)
        .join(Ticket, Ticket.id == _C.ticket_id)
        .where(_RUNNING)
        .order_by(_C.next_action_at.is_(None), _C.next_action_at, _C.id)
        .limit(limit)
    )
    return [ClockRow(*row[:6], timedelta(seconds=row[6]), *row[7:]) for row in rows]
