"""The long-running service: one asyncio process supervising a watcher per mailbox, the
outbox sender and the SLA monitor; signals, reload, systemd notification and metrics."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from config import ConfigError, load_settings
from config.redact import secrets_of
from daemon import app as app_mod
from daemon import logs, metrics
from daemon import runtime as runtime_mod
from daemon.imap import ImapConfigError, ImapSource, retry_delay
from daemon.ingest import IngestResult
from daemon.mailbox import DrainStats, MailboxRunner
from daemon.oauth import OAuthProblem, RefreshWatch
from daemon.outbox import OutboxSender
from daemon.retention import RecordsKeeper
from daemon.sla import SlaMonitor
from daemon.systemd import notify, watchdog_interval
from storage import outbox, queries
from storage.locks import lock_key
from storage.models import utcnow

log = logging.getLogger(__name__)

# How often a mailbox refused for its settings (password, certificate, TLS mode) is tried again
# when nobody reloads: a person has to act, and a wrong password tried every minute locks the
# account on servers with a lockout policy (often 5 to 10 failures in 15 to 30 minutes).
SETTINGS_RETRY_SECONDS = 600.0


def _sends_breaches(settings) -> bool:  # noqa: ANN001 - config.Settings
    """The SLA monitor runs for sla.breached webhooks too, on a desk without [smtp]."""
    return settings.webhooks is not None and "sla.breached" in settings.webhooks.events


def mailbox_name(settings, mailbox: str = "imap") -> str:  # noqa: ANN001 - config.Settings
    """The folder a mailbox watches, as its lease and cursor are kept: "user@host:port/INBOX"."""
    return settings.mailbox(mailbox).lease_name


class Service:
    def __init__(self, application: app_mod.App, config_path: str | None = None) -> None:
        self.app = application
        self.config_path = config_path
        self.stop = asyncio.Event()
        self.stop_thread = threading.Event()  # the IMAP watchers run in worker threads
        # Per mailbox (by name): what ends its watcher's pause (stop, or SIGHUP), and why it
        # pauses, for STATUS=.
        self.wake_watchers: dict[str, threading.Event] = {}
        self.mailbox_problems: dict[str, str] = {}
        self.watchers: ThreadPoolExecutor | None = None  # a thread for each mailbox
        self.reload_problem: str | None = None  # why the last reload was refused, for STATUS=
        self.wake_outbox = asyncio.Event()
        self.wake_sla = asyncio.Event()  # set by a reload: new intervals apply at once
        self.wake_records = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ingested = 0
        settings = application.settings
        # A failing OAuth refresh: a STATUS= line now, and one mail to ops via the outbox.
        self.oauth = RefreshWatch(application.sessions, settings.outbox.ops_address,
                                  settings.support.address, on_change=self._status_changed)
        application.oauth.listener = self.oauth

    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT; the exit status."""
        settings = self.app.settings
        self.loop = asyncio.get_running_loop()
        self.loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        self.loop.add_signal_handler(signal.SIGINT, self.request_stop)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        tasks = self._tasks()
        if not tasks:
            log.error("nothing to do: neither [imap], [[mailboxes]], [smtp] nor [webhooks] "
                      "is configured")
            return 78
        _start_metrics(settings)
        swept = await asyncio.to_thread(self.app.blobs.sweep)
        if swept:
            log.info("removed temporary files left by an earlier run",
                     extra={"fields": {"count": swept}})
        notify("READY=1", "STATUS=running")
        log.info("ticketd running", extra={"fields": {"tasks": ",".join(tasks)}})
        try:
            await asyncio.gather(*(self._supervised(name, run) for name, run in tasks.items()),
                                 self._housekeeping())
        finally:
            if self.watchers is not None:
                self.watchers.shutdown(wait=False)
        notify("STOPPING=1")
        log.info("ticketd stopped")
        return 0

    def _tasks(self) -> dict[str, Callable[[], Awaitable[Any]]]:
        settings = self.app.settings
        tasks: dict[str, Callable[[], Awaitable[Any]]] = {}
        mailboxes = [box.name for box in settings.all_mailboxes]
        if mailboxes:
            # Threads of their own: a watcher holds one for as long as it runs, and the
            # default pool is small and shared with the other loops' short jobs.
            self.watchers = ThreadPoolExecutor(len(mailboxes), thread_name_prefix="mailbox")
        for name in mailboxes:
            self.wake_watchers[name] = threading.Event()
            tasks[f"mailbox {name}"] = lambda name=name: self._watch(name)
        # Each loop asks for its interval (and the records task for its rules) at each pass,
        # and a reload wakes it: what a reload changes applies from the next pass.
        if settings.smtp is not None or settings.webhooks is not None:
            sender: OutboxSender = self.app.outbox_sender()
            tasks["outbox"] = lambda: sender.run(
                self.stop, lambda: self.app.settings.outbox.interval.total_seconds(),
                self.wake_outbox)
        if settings.smtp is not None or _sends_breaches(settings):
            monitor: SlaMonitor = self.app.sla_monitor()
            tasks["sla"] = lambda: monitor.run(
                self.stop, lambda: self.app.settings.sla.interval.total_seconds(),
                self.wake_sla)
        if tasks:  # the event chain and the retention sweep, beside any work that makes data
            keeper = RecordsKeeper.following(lambda: self.app.settings, self.app.sessions,
                                             self.app.blobs)
            tasks["records"] = lambda: keeper.run(self.stop, self.wake_records)
        return tasks

    def _watch(self, mailbox: str) -> Awaitable[None]:
        """The watcher of one mailbox, in a thread of the watchers' own."""
        return asyncio.get_running_loop().run_in_executor(self.watchers, watch_mailbox, self,
                                                          mailbox)

    def request_stop(self) -> None:
        log.info("stopping: finishing the mail in hand")
        notify("STOPPING=1", "STATUS=stopping")
        self.stop_thread.set()
        self._wake_watchers()
        self.stop.set()

    def _wake_watchers(self) -> None:
        for wake in self.wake_watchers.values():
            wake.set()

    def reload(self) -> None:
        """SIGHUP: build a new runtime value from the configuration and put it in force whole
        (identity, templates, team, policies, the SMTP transport and its credentials), or
        keep the running one if it cannot be built. systemd hears of both (sd_notify(3))."""
        notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}",
               "STATUS=reloading the configuration")
        try:
            value = self._build_runtime()
        except ConfigError as err:
            self.reload_problem = f"reload refused: {_first_problem(err)}"
            log.error("reload refused, keeping the running configuration",
                      extra={"fields": {"error": str(err).replace("\n", "; ")}})
        except Exception as err:  # noqa: BLE001 - a reload must never stop the daemon
            self.reload_problem = f"reload refused: {_describe(err)}"
            log.error("reload refused, keeping the running configuration",
                      extra={"fields": {"error": _describe(err)}})
        else:
            logs.mask_also(secrets_of(value.settings))  # before anything logs with them
            self.app.current.swap(value)
            self.reload_problem = None
            # A mailbox that failed is tried again now, with these settings: until that try
            # says otherwise, its old problem is not news.
            self.mailbox_problems.clear()
            self.app.oauth.retry_now()  # e.g. after `ticketd oauth login`
            self.oauth.ops_address = value.settings.outbox.ops_address
            self.oauth.from_address = value.settings.support.address
            self._wake_watchers()
            self.wake_outbox.set()  # mail waiting on the old credentials goes now
            self.wake_sla.set()
            self.wake_records.set()
            log.info("configuration reloaded, intervals and retention rules included "
                     "(database, storage and metrics addresses change only with a restart)",
                     extra={"fields": {"generation": self.app.current.generation}})
        notify("READY=1", f"STATUS={self.status()}")

    def _build_runtime(self) -> runtime_mod.Runtime:
        source = self.config_path or "environment"
        value = runtime_mod.build(load_settings(self.config_path), source)
        running = self.app.settings
        for section in ("imap", "smtp", "webhooks"):  # which loops run is decided at start
            if (getattr(running, section) is None) != (getattr(value.settings, section) is None):
                raise ConfigError(source, section, "added or removed: restart to apply")
        names = [box.name for box in running.all_mailboxes]
        if names != [box.name for box in value.settings.all_mailboxes]:
            raise ConfigError(source, "mailboxes", "a mailbox added, removed or renamed: "
                              "restart to apply (each has a watcher of its own)")
        # The vault that wraps new data keys lives in the session factory, built at start: a
        # reload that seemed to take new master keys would go on wrapping with the old ones.
        if running.privacy.master_keys != value.settings.privacy.master_keys:
            raise ConfigError(source, "privacy.key_file", "master keys changed: restart to apply")
        return value

    def status(self) -> str:
        """The STATUS= line: what `systemctl status` shows beside the unit's state."""
        problem = "".join(f"; mailbox{'' if name == 'imap' else ' ' + name}: {why}"
                          for name, why in sorted(self.mailbox_problems.items()))
        refused = f"; {self.reload_problem}" if self.reload_problem else ""
        oauth = f"; {self.oauth.status()}" if self.oauth.problems else ""
        return f"running; {self.ingested} mails ingested since start{problem}{refused}{oauth}"

    def _status_changed(self) -> None:
        notify(f"STATUS={self.status()}")

    def mail_done(self, result: IngestResult, seconds: float) -> None:
        """Called from the watcher thread after each mail."""
        outcome = "duplicate" if result.duplicate else result.outcome
        metrics.INGESTED.labels(outcome).inc()
        metrics.INGEST_SECONDS.observe(seconds)
        if result.outcome == "quarantined" and not result.duplicate:
            metrics.QUARANTINED.inc()
        self.ingested += 1
        if self.loop is not None and result.outcome == "ticket" and not result.duplicate:
            self.loop.call_soon_threadsafe(self.wake_outbox.set)  # send the ack now

    async def _supervised(self, name: str, run: Callable[[], Awaitable[Any]]) -> None:
        """Keep a task running: a crash is logged and the task restarted with backoff."""
        delay = 1.0
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                await run()
            except Exception as err:  # noqa: BLE001 - one task's bug must not stop the others
                # Types and places, not the text: a task's error may carry mail or SQL values.
                log.error("task crashed, restarting", extra={"fields": {
                    "task": name, "in": f"{delay:.0f}s", **logs.failure_fields(err)}})
            if self.stop.is_set():
                break
            delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 60.0)
            try:
                await asyncio.wait_for(self.stop.wait(), delay)
            except TimeoutError:
                pass

    async def _housekeeping(self) -> None:
        """Watchdog pings from the main loop, status lines, and the tickets gauge."""
        ping = watchdog_interval()
        tick = min(ping or 5.0, 5.0)
        last_count = 0.0
        while not self.stop.is_set():
            notify("WATCHDOG=1", f"STATUS={self.status()}")
            if time.monotonic() - last_count >= 5:  # two indexed queries
                last_count = time.monotonic()
                await asyncio.to_thread(self._count)
            try:
                await asyncio.wait_for(self.stop.wait(), tick)
            except TimeoutError:
                pass

    def _count(self) -> None:
        """The gauges read from the database: every status set, so none keeps a stale value."""
        try:
            with self.app.sessions() as session:
                for status, count in queries.count_by_status(session).items():
                    metrics.TICKETS.labels(status).set(count)
                now = utcnow()
                due = outbox.oldest_due(session, now)
                metrics.OUTBOX_OLDEST_DUE.set((now - due).total_seconds() if due else 0)
        except Exception as err:  # noqa: BLE001 - a metric must never stop the daemon
            log.warning("counting tickets failed", extra={"fields": {"error": type(err).__name__}})


def _start_metrics(settings) -> None:  # noqa: ANN001
    address = settings.metrics.address
    if address:
        from prometheus_client import start_http_server

        start_http_server(address[1], addr=address[0])
        log.info("metrics listening", extra={"fields": {"address": f"{address[0]}:{address[1]}"}})


def watch_mailbox(service: Service, mailbox: str = "imap") -> None:
    """Hold the lease of `mailbox` ("imap", or a [[mailboxes]] name), connect, drain, IDLE,
    repeat, until stopped. Each mailbox has its own watcher thread, lease and problems.

    A failure is retried, in one of two ways. Network and database trouble passes by itself:
    backoff from 1 s to 60 s, starting over after a round that lasted or stored mail (the
    trouble had passed, and mail is waiting). A mailbox refused for
    its settings (login refused, certificate not trusted) waits for a person: an error in the
    log and in systemd's STATUS, and another try only every SETTINGS_RETRY_SECONDS or at once
    on SIGHUP. The daemon itself keeps running: the outbox and the SLA monitor need no mailbox.
    """
    stop = service.stop_thread
    wake = service.wake_watchers.setdefault(mailbox, threading.Event())
    attempt = 0
    # Present from the start, so that "never connected" alerts as well as "disconnected".
    metrics.MAILBOX_CONNECTED.labels(mailbox_name(service.app.settings, mailbox)).set(0)
    while not stop.is_set():
        wake.clear()  # a SIGHUP from now on ends the pause below
        service.mailbox_problems.pop(mailbox, None)  # said only while pausing after a failure
        started, stored = time.monotonic(), service.ingested
        try:
            lease_name = mailbox_name(service.app.settings, mailbox)
            with mailbox_lease(service.app, lease_name, stop) as lease:
                if lease is not None:
                    _watch_once(service, mailbox, lease)
        except Exception as err:  # noqa: BLE001 - sorted by _failed; the watcher must go on
            metrics.IMAP_RECONNECTS.inc()
            recovered = time.monotonic() - started > 60 or service.ingested > stored
            attempt = 1 if recovered else attempt + 1
            pause = _failed(service, mailbox, err, attempt)
            if not stop.is_set():  # else the wake of request_stop may have been cleared above
                wake.wait(pause)


def _failed(service: Service, mailbox: str, err: Exception, attempt: int) -> float:
    """Log a failed round, tell systemd when it needs a person; the seconds to pause."""
    if isinstance(err, ImapConfigError) or (isinstance(err, OAuthProblem) and err.permanent):
        service.mailbox_problems[mailbox] = (
            f"{_describe(err)}; fix the settings and reload, "
            f"tried again every {SETTINGS_RETRY_SECONDS / 60:.0f} min")
        log.error("mailbox refused with these settings, retrying on reload or later",
                  extra={"fields": {"mailbox": mailbox, "in": f"{SETTINGS_RETRY_SECONDS:.0f}s",
                                    "error": _describe(err)}})
        notify(f"STATUS={service.status()}")
        return SETTINGS_RETRY_SECONDS
    pause = retry_delay(attempt)
    service.mailbox_problems[mailbox] = f"reconnecting after {_describe(err)}"
    log.warning("mailbox watcher failed, retrying", extra={"fields": {
        "mailbox": mailbox, "error": _describe(err), "attempt": attempt,
        "in": f"{pause:.1f}s"}})
    return pause


@contextmanager
def mailbox_lease(application: app_mod.App, mailbox: str,
                  stop: threading.Event) -> Iterator[Callable[[], None] | None]:
    """One watcher per mailbox among several daemons on PostgreSQL: a session advisory lock,
    held on its own connection; released by the server at once if this process dies.

    Yields a check to call while watching, which raises once the lease is lost: the lock
    lives as long as its session, and a restarted server has forgotten both (then another
    daemon may take the mailbox). Yields None when stopped while standing by.
    """
    if application.engine.dialect.name != "postgresql":
        yield lambda: None  # SQLite: one daemon per database file
        return
    key = lock_key(mailbox)
    with application.engine.connect() as conn:
        logged = False
        while not stop.is_set():
            if conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                conn.commit()
                log.info("mailbox lease taken", extra={"fields": {"mailbox": mailbox}})
                try:
                    yield lambda: _session_alive(conn)
                finally:
                    with suppress(SQLAlchemyError):  # a dead session holds no lock to release
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
                return
            conn.commit()
            if not logged:
                log.info("mailbox watched by another daemon, standing by",
                         extra={"fields": {"mailbox": mailbox}})
                logged = True
            stop.wait(2.0)
        yield None


def _session_alive(conn: Connection) -> None:
    """Raises when the lease's session is gone; no other session can release its lock."""
    conn.execute(text("SELECT 1"))
    conn.commit()


def _runner(application: app_mod.App, source: ImapSource, on_result,  # noqa: ANN001
            mailbox: str = "imap") -> MailboxRunner:
    settings = application.settings
    box = settings.mailbox(mailbox)
    assert box is not None

    def ingestor():  # noqa: ANN202 - asked at each batch: a reload applies from the next on
        found = application.settings.mailbox(mailbox)
        return application.ingestor_for(found.brand if found else box.brand)

    return MailboxRunner(source, ingestor, application.sessions, name=box.lease_name,
                         batch_size=box.batch_size, on_result=on_result)


def _watch_once(service: Service, mailbox: str, confirm_lease: Callable[[], None]) -> None:
    """One connection: drain, IDLE, repeat; returns when a reload changed the mailbox's
    settings (the caller connects again with the new ones and, when it changed, the new
    password)."""
    imap = service.app.settings.mailbox(mailbox)
    assert imap is not None
    source: ImapSource = service.app.imap_source(mailbox)
    runner = _runner(service.app, source, service.mail_done, mailbox)
    runner.stop = service.stop_thread
    try:
        source.connect()
        metrics.MAILBOX_CONNECTED.labels(runner.name).set(1)
        log.info("mailbox connected", extra={"fields": {"mailbox": runner.name}})
        runner.sync_cursor()
        while not runner.stop.is_set():
            runner.drain()
            metrics.MAILBOX_LAST_PASS.labels(runner.name).set_to_current_time()
            waited = 0.0
            while not runner.stop.is_set() and waited < imap.idle_timeout:
                confirm_lease()  # a lost lease fails this round: let go of the mailbox
                _keep_token_fresh(service.app, imap)
                if service.app.settings.mailbox(mailbox) != imap:
                    log.info("mailbox settings changed by a reload, reconnecting",
                             extra={"fields": {"mailbox": runner.name}})
                    return
                if source.wait(min(2.0, imap.idle_timeout - waited)):
                    break
                waited += 2.0
    finally:
        metrics.MAILBOX_CONNECTED.labels(runner.name).set(0)
        source.close()


def _keep_token_fresh(application: app_mod.App, imap) -> None:  # noqa: ANN001 - MailboxSettings
    """Refresh the OAuth token before it expires, so that the next login (after a drop, or
    when the provider ends the session) has one at hand. No HTTP unless it is due."""
    if imap.auth != "oauth2":
        return
    try:
        application.oauth.keeper(application.settings, imap.name).access_token()
    except OAuthProblem:
        pass  # counted, logged and reported by the keeper; the session in hand goes on


def _first_problem(err: ConfigError) -> str:
    """The STATUS= line's reason: the first problem (file, key, reason), and how many more."""
    more = len(err.problems) - 1
    return str(err.problems[0]) + (f" (and {more} more, see the log)" if more else "")


def _describe(err: BaseException | None) -> str:
    if err is None:
        return "-"
    text_ = str(err).splitlines()[0][:200] if str(err) else ""
    return f"{type(err).__name__}: {text_}" if text_ else type(err).__name__


def drain_once(application: app_mod.App, progress=None):  # noqa: ANN001, ANN201
    """Connect to each mailbox in turn, ingest everything its folder holds, disconnect
    (`ticketd run --once`); the counts of all of them. `progress(count)` is called after each
    mail (a person waiting on a backlog sees it move)."""
    done = 0

    def tick(result: IngestResult, seconds: float) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done)

    names = [box.name for box in application.settings.all_mailboxes]
    if not names:
        raise ValueError("no [imap] section nor [[mailboxes]] in the configuration")
    total = DrainStats()
    for name in names:
        source = application.imap_source(name)
        runner = _runner(application, source, tick, name)
        source.connect()
        try:
            runner.sync_cursor()
            stats = runner.drain()
        finally:
            source.close()
        for key in ("stored", "duplicates", "ignored", "quarantined", "held"):
            setattr(total, key, getattr(total, key) + getattr(stats, key))
        total.outcomes += stats.outcomes
    return total
