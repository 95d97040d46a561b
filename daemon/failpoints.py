"""Named crash points for the crash-recovery tests: TICKETD_FAILPOINT=<name> kills the
process with SIGKILL when it reaches that point, exactly as a power cut or OOM kill would."""

from __future__ import annotations

import logging
import os
import signal
import time

log = logging.getLogger(__name__)


_reached: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Kill the process here when TICKETD_FAILPOINT is `name`, or `name@N` for the N-th time
    this point is reached."""
    wanted = os.environ.get("TICKETD_FAILPOINT")
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if nth and _reached[name] < int(nth):
        return
    log.warning("failpoint reached: killing the process", extra={"fields": {"name": name}})
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)
