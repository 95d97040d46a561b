"""The long-running service: supervises the mailbox watcher until asked to stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from tenacity import Retrying, retry_if_exception_type, stop_never, wait_random_exponential

from daemon import app as app_mod
from daemon.imap import ImapSource
from daemon.ingest import TemporaryFailure
from daemon.mailbox import MailboxRunner
from daemon.outbox import OutboxSender

log = logging.getLogger(__name__)

# Errors after which the watcher reconnects and goes on; anything else is a bug
# or a configuration problem and is logged before the watcher is restarted.
RECOVERABLE = (OSError, TemporaryFailure, EOFError)


def mailbox_name(settings) -> str:  # noqa: ANN001 - config.Settings
    imap = settings.imap
    return f"{imap.username}@{imap.host}:{imap.port}/{imap.folder}"


def watch_mailbox(application: app_mod.App, stop: threading.Event) -> None:
    """Connect, drain, IDLE, repeat; reconnect with backoff after any failure."""
    settings = application.settings
    retry = Retrying(
        retry=retry_if_exception_type(Exception),
        wait=wait_random_exponential(multiplier=1, max=60),
        stop=stop_never,
        before_sleep=lambda state: log.warning(
            "mailbox watcher failed, retrying error=%s attempt=%d",
            _describe(state.outcome.exception()), state.attempt_number,
        ),
        sleep=lambda seconds: stop.wait(seconds),
        reraise=True,
    )
    for attempt in retry:
        with attempt:
            if stop.is_set():
                return
            _watch_once(application, stop, settings)


def _watch_once(application: app_mod.App, stop: threading.Event, settings) -> None:  # noqa: ANN001
    source: ImapSource = app_mod.imap_source(settings)
    runner = MailboxRunner(
        source, application.ingestor, application.sessions,
        name=mailbox_name(settings), batch_size=settings.imap.batch_size,
    )
    runner.stop = stop
    try:
        source.connect()
        log.info("mailbox connected mailbox=%s", runner.name)
        runner.sync_cursor()
        idle = settings.imap.idle_timeout
        while not stop.is_set():
            runner.drain()
            waited = 0.0
            while not stop.is_set() and waited < idle:
                if source.wait(min(2.0, idle - waited)):
                    break
                waited += 2.0
    finally:
        source.close()


def _describe(err: BaseException | None) -> str:
    if err is None:
        return "-"
    text = str(err).splitlines()[0][:200] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


async def serve(application: app_mod.App) -> int:
    """Run the mailbox watcher and the outbox sender until SIGTERM/SIGINT; the exit status."""
    settings = application.settings
    stop_thread = threading.Event()  # for the IMAP worker thread
    stop = asyncio.Event()  # for the asyncio tasks
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        log.info("stopping: finishing the mail in hand")
        stop_thread.set()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop)
    tasks = []
    if settings.imap is not None:
        tasks.append(asyncio.to_thread(watch_mailbox, application, stop_thread))
    if settings.smtp is not None:
        sender = OutboxSender.from_settings(settings, application.sessions)
        tasks.append(sender.run(stop, settings.outbox.interval.total_seconds()))
    if not tasks:
        log.error("nothing to do: neither [imap] nor [smtp] is configured")
        return 78
    log.info("ticketd running")
    await asyncio.gather(*tasks)
    log.info("ticketd stopped")
    return 0


def drain_once(application: app_mod.App):  # noqa: ANN201 - daemon.mailbox.DrainStats
    """Connect, ingest everything the folder holds, disconnect (`ticketd run --once`)."""
    settings = application.settings
    source = app_mod.imap_source(settings)
    runner = MailboxRunner(
        source, application.ingestor, application.sessions,
        name=mailbox_name(settings), batch_size=settings.imap.batch_size,
    )
    source.connect()
    try:
        runner.sync_cursor()
        return runner.drain()
    finally:
        source.close()
