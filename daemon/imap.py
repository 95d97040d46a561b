"""The IMAP mailbox source: new messages in, processed messages filed away.

Synchronous, built on IMAPClient, meant to run in a worker thread (one ImapSource
per thread). Every message command uses UIDs. The caller loops:

    pending() -> fetch() -> store and commit -> mark_processed() / mark_quarantined()
    and, when pending() comes back empty, wait()

A message leaves the folder only after the caller has committed it, so after a crash
pending() lists it again and the caller's ingest key drops the duplicate.
"""

from __future__ import annotations

import hashlib
import imaplib
import ipaddress
import logging
import random
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

log = logging.getLogger(__name__)

TLS_MODES = ("implicit", "starttls", "none")
DONE_KEYWORD = "$TicketdDone"
# RFC 2177: clients should re-issue IDLE at least every 29 minutes; some servers drop sooner.
MAX_IDLE_SECONDS = 25 * 60
MAX_RETRY_DELAY = 60.0
# SSL errors a retry can cure: the peer went away mid-handshake. Others are configuration.
_TRANSIENT_SSL_ERRORS = (ssl.SSLEOFError, ssl.SSLSyscallError, ssl.SSLZeroReturnError)


class ImapConfigError(Exception):
    """A failure that retrying will not cure: settings, credentials, certificate."""


class GreetingTimeout(TimeoutError):
    """No greeting in time: the network, or a TLS mode that does not match the port. Still
    retried as a timeout, since the network may be all it was."""


class ImapAuthError(ImapConfigError):
    """The server refused the credentials."""


class ImapCertificateError(ImapConfigError):
    """The server's certificate did not verify against the trusted CAs."""


class TokenSource(Protocol):
    """Fresh OAuth 2 access tokens (daemon.oauth.TokenKeeper)."""

    def access_token(self) -> str: ...
    def invalidate(self) -> None: ...


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes | None  # None when size > max_bytes: not downloaded
    size: int
    delivered_at: datetime | None = None  # INTERNALDATE: when the server got it (UTC)


class ImapSource:
    """One mailbox folder on one IMAP server, watched over one connection."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: str,
        username: str,
        password: str | None = None,
        oauth2_token: str | None = None,
        oauth2_tokens: TokenSource | None = None,
        oauth2_mechanism: str = "xoauth2",
        folder: str = "INBOX",
        processed_folder: str = "Processed",
        quarantine_folder: str = "Quarantine",
        junk_folder: str = "Junk",
        ca_file: str | None = None,
        timeout: float = 30,
        max_bytes: int = 40 * 2**20,
        ignore_capabilities: Iterable[str] = (),
    ) -> None:
        """`ignore_capabilities` names capabilities to act as if the server lacked
        (e.g. {"MOVE"}), for servers that advertise more than they do right, and for tests."""
        if tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}, not {tls!r}")
        given = [c for c in (password, oauth2_token, oauth2_tokens) if c is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of password, oauth2_token and oauth2_tokens")
        if oauth2_mechanism not in ("xoauth2", "oauthbearer"):
            raise ValueError(f"oauth2_mechanism must be xoauth2 or oauthbearer, "
                             f"not {oauth2_mechanism!r}")
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self.folder = folder
        self.processed_folder = processed_folder
        self.quarantine_folder = quarantine_folder
        self.junk_folder = junk_folder
        self.ca_file = ca_file
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.ignore_capabilities = frozenset(name.upper() for name in ignore_capabilities)
        self._password = password
        self._oauth2_token = oauth2_token
        self._oauth2_tokens = oauth2_tokens
        self._oauth2_mechanism = oauth2_mechanism
        self._client: IMAPClient | None = None
        self._capabilities: frozenset[str] = frozenset()
        self._uidvalidity: int | None = None

    # -- connection ----------------------------------------------------------------------

    def connect(self, *, create_folders: bool = True) -> None:
        """Open, secure, log in, create the target folders when missing (unless told not to:
        `doctor` only looks), select the folder.

        Raises ImapAuthError / ImapCertificateError / ImapConfigError for configuration
        problems; anything else is sorted by is_temporary().
        """
        self.close()
        self._client = self._open()
        try:
            self._login()
            self._capabilities = self._read_capabilities()
            folders = (self.processed_folder, self.quarantine_folder, self.junk_folder)
            for folder in folders if create_folders else ():
                self._ensure_folder(folder)
            self._select()
        except BaseException:
            self.close()
            raise
        log.info("imap connected", extra={"fields": {
            "host": self.host, "port": self.port, "tls": self.tls, "username": self.username,
            "folder": self.folder, "uidvalidity": self.uidvalidity,
            "capabilities": " ".join(sorted(self._capabilities & {"IDLE", "MOVE", "UIDPLUS"}))}})

    def missing_folders(self) -> list[str]:
        """The target folders the server does not have (yet)."""
        return [f for f in (self.processed_folder, self.quarantine_folder, self.junk_folder)
                if not self._conn.folder_exists(f)]

    @property
    def uidvalidity(self) -> int:
        if self._uidvalidity is None:
            raise RuntimeError("ImapSource is not connected")
        return self._uidvalidity

    @property
    def capabilities(self) -> frozenset[str]:
        """What the server offers after login, minus ignore_capabilities."""
        return self._capabilities

    def noop(self) -> None:
        self._conn.noop()

    def close(self) -> None:
        """Log out; never raises (the connection may already be dead)."""
        client, self._client = self._client, None
        self._uidvalidity = None
        if client is None:
            return
        try:
            client.logout()
        except Exception:
            _shutdown(client)

    # -- messages ------------------------------------------------------------------------

    def pending(self, limit: int) -> list[int]:
        """UIDs still in the folder and not done, ascending, at most `limit`.

        Everything in the folder, not only UIDs above a cursor: a message stored but not
        yet moved when the process died must come back after a restart.
        """
        # Dovecot announces new mail at the end of a command, and SEARCH lists only mail
        # announced before it ran: NOOP first. Arrivals announced by SEARCH stay for wait().
        self._conn.noop()
        self._take_arrivals()
        uids = self._conn.search(["NOT", "DELETED", "NOT", "KEYWORD", DONE_KEYWORD])
        return sorted(uids)[:limit]

    def fetch(self, uids: list[int]) -> list[Fetched]:
        """Sizes first, then the bytes of those within max_bytes; never sets \\Seen."""
        if not uids:
            return []
        sizes = {uid: data[b"RFC822.SIZE"]
                 for uid, data in self._conn.fetch(uids, ["RFC822.SIZE"]).items()}
        wanted = [uid for uid, size in sizes.items() if size <= self.max_bytes]
        bodies = self._conn.fetch(wanted, ["BODY.PEEK[]", "INTERNALDATE"]) if wanted else {}
        fetched = []
        for uid in sorted(sizes):
            if sizes[uid] > self.max_bytes:
                log.warning("message over the size limit: not downloaded", extra={"fields": {
                    "uid": uid, "bytes": sizes[uid], "limit": self.max_bytes}})
                fetched.append(Fetched(uid, None, sizes[uid]))
            elif uid in bodies:  # else expunged by someone else between the two FETCHes
                fetched.append(Fetched(uid, bodies[uid][b"BODY[]"], sizes[uid],
                                       _utc(bodies[uid].get(b"INTERNALDATE"))))
        return fetched

    def mark_processed(self, uids: Iterable[int]) -> None:
        self._file_away(uids, self.processed_folder)

    def mark_quarantined(self, uids: Iterable[int]) -> None:
        self._file_away(uids, self.quarantine_folder)

    def mark_junk(self, uids: Iterable[int]) -> None:
        self._file_away(uids, self.junk_folder)

    def take_out_of(self, folder: str, sha256: str, size: int) -> bool:
        """Move the message of these bytes (a released spam or quarantined mail) from
        `folder` to Processed; False when it holds no such message (moved before, or by a
        person). Found by its exact size, told apart by the hash of its bytes: a Message-ID
        may be missing, reused or too odd to search for. The watched folder is selected
        again."""
        self._conn.select_folder(folder)
        try:
            found = self._conn.search(["LARGER", str(max(size - 1, 0)), "SMALLER",
                                       str(size + 1), "NOT", "DELETED", "NOT", "KEYWORD",
                                       DONE_KEYWORD])
            bodies = self._conn.fetch(sorted(found), ["BODY.PEEK[]"]) if found else {}
            same = [uid for uid, data in sorted(bodies.items())
                    if hashlib.sha256(data[b"BODY[]"]).hexdigest() == sha256]
            self._file_away(same[:1], self.processed_folder)  # one copy out, not every twin
        finally:
            self._select()
        return bool(same)

    def wait(self, timeout: float) -> bool:
        """Block until the server reports new mail or `timeout` seconds pass.

        IDLE when offered (timeout capped at MAX_IDLE_SECONDS), else sleep and NOOP.
        Returns True when something arrived, including arrivals the server announced
        during an earlier command (a SEARCH may report EXISTS for mail it did not list).
        """
        if self._take_arrivals():
            return True
        if "IDLE" in self._capabilities:
            arrived = self._idle_or_dropped(min(timeout, MAX_IDLE_SECONDS))
        else:
            time.sleep(timeout)
            self._conn.noop()
            arrived = False
        return self._take_arrivals() or arrived

    # -- internals -----------------------------------------------------------------------

    @property
    def _conn(self) -> IMAPClient:
        if self._client is None:
            raise RuntimeError("ImapSource is not connected")
        return self._client

    def _open(self) -> IMAPClient:
        context = self._ssl_context()
        try:
            client = IMAPClient(self.host, self.port, ssl=self.tls == "implicit",
                                ssl_context=context, timeout=self.timeout)
            # IMAPClient routes imaplib's protocol trace to the "imapclient.imaplib" logger
            # at DEBUG; that trace contains whole messages. Invariant 8: no bodies in logs.
            client._imap.debug = 0
            # INTERNALDATE with the zone the server gave: IMAPClient would otherwise turn it
            # into naive local time at today's offset, an hour off across a DST change.
            client.normalise_times = False
            if self.tls == "starttls":
                _starttls(client, context)
        except ssl.SSLCertVerificationError as exc:
            raise ImapCertificateError(
                f"certificate of {self.host}:{self.port} not trusted: {exc.verify_message}"
            ) from exc
        except ssl.SSLError as exc:
            if isinstance(exc, _TRANSIENT_SSL_ERRORS):
                raise
            # The hint first: the STATUS line and the log keep only the start of a message.
            raise ImapConfigError(  # e.g. implicit TLS against a plain-text port
                f"TLS with {self.host}:{self.port} failed ({self._tls_mode_hint()}): {exc}"
            ) from exc
        except TimeoutError as exc:
            raise GreetingTimeout(f"no greeting from {self.host}:{self.port} within "
                                  f"{self.timeout:g}s ({self._tls_mode_hint()})") from exc
        return client

    def _tls_mode_hint(self) -> str:
        """The likely mistake when TLS modes differ: an implicit-TLS port says nothing until
        the client starts TLS (a wait for the greeting times out); a plain port's greeting
        reads as a broken TLS record."""
        if self.tls == "implicit":
            return ('tls = "implicit", but the port may speak plain IMAP with STARTTLS '
                    '(usually 143): is tls = "starttls" meant?')
        return (f'tls = "{self.tls}" waits for a greeting, but an implicit-TLS port (usually '
                f'993) stays silent: is tls = "implicit" meant?')

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.tls == "none":
            if not _is_loopback(self.host):
                log.warning("IMAP without TLS: credentials travel in clear",
                            extra={"fields": {"host": self.host}})
            return None
        return ssl.create_default_context(cafile=self.ca_file)

    def _login(self) -> None:
        try:
            if self._oauth2_tokens is not None:
                self._refreshing_login(self._oauth2_tokens)
            elif self._oauth2_token is not None:
                self._bearer_login(self._oauth2_token)
            else:
                self._conn.login(self.username, self._password)
        except LoginError as exc:
            if "[UNAVAILABLE]" in str(exc):  # RFC 5530: the server's backend is down
                raise
            raise ImapAuthError(f"{self.host} refused login as {self.username}: {exc}") from None

    def _refreshing_login(self, tokens: TokenSource) -> None:
        """A refused token is refreshed at once and tried once more: it may have been
        revoked or cut short by the provider before the expiry it was issued with."""
        try:
            self._bearer_login(tokens.access_token())
        except LoginError as exc:
            if "[UNAVAILABLE]" in str(exc):
                raise
            log.info("imap refused the access token, refreshing it",
                     extra={"fields": {"host": self.host, "username": self.username}})
            tokens.invalidate()
            self._bearer_login(tokens.access_token())

    def _bearer_login(self, token: str) -> None:
        if self._oauth2_mechanism == "oauthbearer":
            self._conn.oauthbearer_login(self.username, token)
        else:
            self._conn.oauth2_login(self.username, token)

    def _read_capabilities(self) -> frozenset[str]:
        offered = {name.decode("ascii", "replace").upper() for name in self._conn.capabilities()}
        return frozenset(offered - self.ignore_capabilities)

    def _ensure_folder(self, folder: str) -> None:
        if self._conn.folder_exists(folder):
            return
        try:
            self._conn.create_folder(folder)
        except IMAPClientError as exc:
            if "ALREADYEXISTS" not in str(exc):  # another client created it meanwhile
                raise
        self._conn.subscribe_folder(folder)  # so that agents' mail clients show it
        log.info("created folder", extra={"fields": {"folder": folder, "host": self.host}})

    def _select(self) -> None:
        info = self._conn.select_folder(self.folder)
        self._uidvalidity = int(info[b"UIDVALIDITY"])
        self._take_arrivals()  # the EXISTS of SELECT is a count, not an arrival

    def _file_away(self, uids: Iterable[int], folder: str) -> None:
        uids = sorted(set(uids))
        if not uids:
            return
        if "MOVE" in self._capabilities:
            self._conn.move(uids, folder)
        elif "UIDPLUS" in self._capabilities:
            self._conn.copy(uids, folder)
            self._conn.add_flags(uids, [b"\\Deleted"], silent=True)
            self._conn.uid_expunge(uids)  # only ours: plain EXPUNGE would hit others' too
        else:
            self._conn.copy(uids, folder)
            self._conn.add_flags(uids, [DONE_KEYWORD], silent=True)
        log.info("filed messages", extra={"fields": {"count": len(uids), "folder": folder}})

    def _idle_or_dropped(self, timeout: float) -> bool:
        try:
            return self._idle(timeout)
        except (imaplib.IMAP4.abort, IMAPClientError) as exc:
            # A BYE just as IDLE starts reaches IMAPClient as "Unexpected IDLE response":
            # the session is over all the same, and a reconnect is what cures it.
            dropped = isinstance(exc, imaplib.IMAP4.abort) or "BYE" in str(exc)
            if not dropped:
                raise
            # Providers end a session when its token expires or is revoked: the next login
            # takes a fresh one rather than be refused with this one first.
            if self._oauth2_tokens is not None:
                self._oauth2_tokens.invalidate()
            if isinstance(exc, imaplib.IMAP4.abort):
                raise
            raise imaplib.IMAP4.abort(f"{self.host} closed the connection: {exc}") from exc

    def _idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self._conn.idle()
        responses: list[Any] = []
        if self._input_buffered():
            # Dovecot announces the mail that came since our last command right after its
            # "+ idling", often in the same packet: imaplib has read it into its buffer,
            # where idle_check(), which polls the socket, cannot see it, and the mail would
            # wait for the end of this IDLE. DONE now: idle_done() parses what is buffered.
            deadline = 0.0
        while not _reports_arrival(responses) and (left := deadline - time.monotonic()) > 0:
            batch = self._conn.idle_check(timeout=left)
            # idle_check() returns early and empty only when the socket hit EOF or an error.
            if any(r[:1] == (b"BYE",) for r in batch) or (
                    not batch and time.monotonic() < deadline - 0.01):
                raise imaplib.IMAP4.abort(f"{self.host} closed the connection during IDLE")
            responses += batch
        responses += self._conn.idle_done()[1]
        return _reports_arrival(responses)

    def _input_buffered(self) -> bool:
        """Whether imaplib's reader holds bytes not yet parsed, whatever the socket holds."""
        sock = self._conn.socket()
        sock.setblocking(False)  # so that peek() never waits when the buffer is empty
        try:
            return bool(self._conn._imap.file.peek(1))
        except OSError:  # nothing to read yet (TLS says so with SSLWantReadError)
            return False
        finally:
            sock.settimeout(self.timeout)

    def _take_arrivals(self) -> bool:
        """Whether an untagged EXISTS came with an earlier command; forgets it.

        IMAPClient drops untagged responses that do not belong to the command; imaplib
        still keeps them, so this reads its store (IMAPClient offers no public way).
        """
        untagged = self._conn._imap.untagged_responses
        untagged.pop("RECENT", None)
        return bool(untagged.pop("EXISTS", None))


def _utc(moment: Any) -> datetime | None:
    """INTERNALDATE as an aware UTC time (read with its zone: normalise_times is off)."""
    if not isinstance(moment, datetime):
        return None
    return moment.astimezone(UTC)


def _starttls(client: IMAPClient, context: ssl.SSLContext | None) -> None:
    try:
        if not client.has_capability("STARTTLS"):
            raise ImapConfigError(f"{client.host} does not offer STARTTLS")
        client.starttls(context)
    except BaseException:
        _shutdown(client)
        raise


def _shutdown(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception as exc:  # e.g. a failed TLS handshake already took the socket
        log.debug("closing the connection failed",
                  extra={"fields": {"host": client.host, "error": str(exc)}})


def _reports_arrival(responses: list[Any]) -> bool:
    def arrival(response: Any) -> bool:
        kind = response[1] if len(response) > 1 else None
        return kind == b"EXISTS" or (kind == b"RECENT" and response[0] > 0)
    return any(arrival(response) for response in responses)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# -- reconnecting --------------------------------------------------------------------------

def is_temporary(exc: BaseException) -> bool:
    """True for failures a reconnect may cure (network, timeouts, aborted sessions,
    servers saying UNAVAILABLE); False for configuration problems and protocol errors."""
    if isinstance(exc, ImapConfigError | ssl.SSLCertVerificationError):
        return False
    if isinstance(exc, ssl.SSLError):
        return isinstance(exc, _TRANSIENT_SSL_ERRORS)
    if isinstance(exc, LoginError):
        return "[UNAVAILABLE]" in str(exc)
    return isinstance(exc, OSError | imaplib.IMAP4.abort)


def retry_delay(attempt: int, cap: float = MAX_RETRY_DELAY) -> float:
    """Exponential backoff (1, 2, 4 ... s, at most `cap`) with jitter, so that several
    daemons that lost the same server do not come back in step."""
    return min(cap, 2.0 ** min(attempt - 1, 30)) * random.uniform(0.5, 1.0)


def connect_with_retry(source: ImapSource, stop_event: threading.Event | None = None, *,
                       max_delay: float = MAX_RETRY_DELAY) -> bool:
    """Connect `source`, retrying temporary failures with backoff until `stop_event` is set.

    Configuration problems (see is_temporary) raise at once. Returns True when connected,
    False when stop_event was set first.
    """
    stop = stop_event or threading.Event()
    attempt = 0
    while not stop.is_set():
        try:
            source.connect()
            return True
        except Exception as exc:
            if not is_temporary(exc):
                raise
            attempt += 1
            delay = retry_delay(attempt, max_delay)
            log.warning("cannot reach IMAP, retrying", extra={"fields": {
                "host": source.host, "port": source.port, "error": f"{type(exc).__name__}: {exc}",
                "attempt": attempt, "in": f"{delay:.1f}s"}})
            stop.wait(delay)
    return False
