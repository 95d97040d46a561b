"""Two daemons on one PostgreSQL write events and seal at the same time: the chain they build
together holds every row once, in consecutive places, and verifies."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import func, select

from storage import audit, db
from storage.models import Event

ROUNDS, PER_ROUND = 60, 5

# One writer: small transactions of events (as ingest and the monitor write them), each
# followed by a sealing pass, as the daemon's task does.
WRITER = """
import sys
from storage import audit, db, queries
engine = db.make_engine(sys.argv[1])
sessions = db.session_factory(engine)
for n in range({rounds}):
    with sessions.begin() as session:
        for k in range({per_round}):
            queries.insert_event(session, "note", actor=sys.argv[2], n=n, k=k)
    audit.seal(sessions, limit=7)
engine.dispose()
"""


def test_two_writers_sealing_concurrently_build_one_valid_chain(pg_url: str) -> None:
    code = WRITER.format(rounds=ROUNDS, per_round=PER_ROUND)
    writers = [subprocess.Popen([sys.executable, "-c", code, pg_url, name])
               for name in ("daemon-a", "daemon-b")]
    for writer in writers:
        assert writer.wait(timeout=240) == 0
    engine = db.make_engine(pg_url)
    sessions = db.session_factory(engine)
    audit.seal(sessions)  # the rows a writer's last pass could not yet see
    with sessions() as session:
        places = list(session.scalars(select(Event.chain_seq).order_by(Event.chain_seq)))
        per_actor = dict(session.execute(select(Event.actor, func.count()).group_by(Event.actor))
                         .all())
        verdict = audit.verify(session)
    total = 2 * ROUNDS * PER_ROUND
    assert per_actor == {"daemon-a": total // 2, "daemon-b": total // 2}
    assert places == list(range(1, total + 1))
    assert (verdict.broken, verdict.checked, verdict.unsealed) == (None, total, 0)
    engine.dispose()
