"""Named crash points for the crash-recovery tests: TICKETD_FAILPOINT=<name> kills the
process with SIGKILL when it reaches that point, exactly as a power cut or OOM kill would."""

from __future__ import annotations

import logging
import os
import signal
import time

log = logging.getLogger(__name__)


def failpoint(name: str) -> None:
    if os.environ.get("TICKETD_FAILPOINT") == name:
        log.warning("failpoint reached: killing the process", extra={"fields": {"name": name}})
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
