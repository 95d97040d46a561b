"""OAuth 2 for the mailboxes: log in once, then keep a fresh access token for IMAP and SMTP.

`ticketd oauth login MAILBOX` gets a refresh token (daemon.oauth_login) and stores it
(storage.tokens). A `TokenKeeper` hands out the access token, refreshes it a
while before it expires, at once when the server refused it, and keeps the refresh token the
provider rotates. A refresh that keeps failing is told to a person (`RefreshWatch`).

Authlib's OAuth2Session does the HTTP of every grant for both providers: one library, the
endpoints configurable, so that tests run against a local token server.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from daemon import metrics
from responders.ops_notice import ops_notice
from storage import outbox
from storage.crypto import MasterKeys
from storage.models import utcnow
from storage.tokens import TokenRecord, TokenStore

log = logging.getLogger(__name__)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# Refresh this long before the access token expires (at most half its life), so that a login
# or an SMTP connection never starts with a token about to lapse.
REFRESH_MARGIN = 300.0
# After a failed refresh, the endpoint is asked again at most this often (a token the server
# refused is refreshed at once all the same).
RETRY_SECONDS = 30.0
# A refresh failing for a passing reason (endpoint down) is reported once it has lasted this.
REPORT_AFTER = 900.0
# Errors of the token endpoint that a retry will not cure: a person has to log in again.
PERMANENT_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client",
                              "invalid_scope", "access_denied", "expired_token"})
MICROSOFT = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
MICROSOFT_SCOPES = ("https://outlook.office.com/IMAP.AccessAsUser.All",
                    "https://outlook.office.com/SMTP.Send", "offline_access")
GOOGLE_SCOPES = ("https://mail.google.com/",)


@dataclass(frozen=True)
class Provider:
    token_url: str
    device_url: str
    auth_url: str
    scopes: tuple[str, ...]


def preset(name: str, tenant: str = "organizations") -> Provider:
    """The endpoints and mail scopes of a provider; "custom" has none."""
    if name == "microsoft":
        base = MICROSOFT.format(tenant=urllib.parse.quote(tenant, safe=""))
        return Provider(f"{base}/token", f"{base}/devicecode", f"{base}/authorize",
                        MICROSOFT_SCOPES)
    if name == "google":
        return Provider("https://oauth2.googleapis.com/token", "",
                        "https://accounts.google.com/o/oauth2/v2/auth", GOOGLE_SCOPES)
    return Provider("", "", "", ())


class OAuthProblem(Exception):
    """A login or refresh that did not give a token. `permanent`: a person must act."""

    def __init__(self, message: str, *, permanent: bool, error: str = "") -> None:
        super().__init__(message)
        self.permanent = permanent
        self.error = error  # the OAuth error code, "" for network trouble


@dataclass(frozen=True)
class OAuthClient:
    """One mailbox's application registration and endpoints, from [imap] or [smtp]."""

    mailbox: str  # "imap" or "smtp": names the token file
    username: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    token_url: str = ""
    device_url: str = ""
    auth_url: str = ""
    scopes: tuple[str, ...] = ()
    timeout: float = 30

    @classmethod
    def from_section(cls, mailbox: str, section: Any) -> OAuthClient:  # config ImapSettings...
        base = preset(section.oauth2_provider, section.oauth2_tenant)
        secret = section.oauth2_client_secret
        return cls(mailbox, section.username or "", section.oauth2_client_id,
                   secret.get_secret_value().strip() if secret else None,
                   section.oauth2_token_url or base.token_url,
                   section.oauth2_device_url or base.device_url,
                   section.oauth2_auth_url or base.auth_url,
                   tuple(section.oauth2_scopes) or base.scopes, float(section.timeout))

    def session(self, **options: Any) -> OAuth2Session:
        # A public client (Microsoft's device flow) sends only its id; Google's installed
        # apps have a secret that is not really one, sent in the body as Google documents.
        method = "client_secret_post" if self.client_secret else "none"
        return OAuth2Session(self.client_id, self.client_secret, scope=" ".join(self.scopes),
                             token_endpoint_auth_method=method,
                             # Authlib ignores `timeout=` here: without a default timeout a
                             # token endpoint that never answers would hold the keeper forever.
                             default_timeout=self.timeout, **options)


def record_of(token: dict[str, Any], previous: str, now: float) -> TokenRecord:
    """The record a token response gives: the rotated refresh token, else the one we had."""
    lifetime = float(token.get("expires_in") or 3600)
    return TokenRecord(refresh_token=token.get("refresh_token") or previous,
                       access_token=str(token["access_token"]), expires_at=now + lifetime,
                       obtained_at=now, scope=str(token.get("scope", "")))


def problem_of(exc: Exception, what: str) -> OAuthProblem:
    if isinstance(exc, OAuthError):
        code = str(exc.error or "")
        detail = (exc.description or "")[:200]
        return OAuthProblem(f"{what}: {code} {detail}".strip(),
                            permanent=code in PERMANENT_ERRORS, error=code)
    return OAuthProblem(f"{what}: {type(exc).__name__}: {str(exc)[:200]}", permanent=False)


def refresh(client: OAuthClient, refresh_token: str, now: float) -> TokenRecord:
    """One refresh at the token endpoint; OAuthProblem when it gave no token."""
    try:
        with client.session() as session:
            token = session.refresh_token(client.token_url, refresh_token=refresh_token)
    except (OAuthError, requests.RequestException, ValueError, KeyError) as exc:
        raise problem_of(exc, f"refresh of the {client.mailbox} token failed") from None
    if "access_token" not in token:
        raise OAuthProblem("the token endpoint answered without an access token",
                           permanent=False)
    return record_of(token, refresh_token, now)


# -- keeping the access token fresh ---------------------------------------------------------

class Listener(Protocol):
    def refreshed(self, mailbox: str, record: TokenRecord) -> None: ...
    def failed(self, mailbox: str, problem: OAuthProblem, record: TokenRecord | None,
               since: float) -> None: ...


class TokenKeeper:
    """The access token of one mailbox, refreshed as needed; safe to share between threads.

    The file is read again before each refresh: `ticketd oauth login` run while the daemon
    is up takes effect at the next refresh, without a restart.
    """

    def __init__(self, client: OAuthClient, store: TokenStore, *,
                 clock: Callable[[], float] = time.time,
                 listener: Listener | None = None) -> None:
        self.client = client
        self.store = store
        self.clock = clock
        self.listener = listener
        self._lock = threading.Lock()
        self._record: TokenRecord | None = None
        self._failing_since: float | None = None
        self._last_problem: OAuthProblem | None = None
        self._retry_at = 0.0
        # A refreshed record the file did not take (disk full): the only copy of a rotated
        # refresh token, used from memory and written again at every call until it sticks.
        self._unsaved: TokenRecord | None = None
        self._save_failing_since = 0.0

    @property
    def mailbox(self) -> str:
        return self.client.mailbox

    def access_token(self) -> str:
        """A token good for a while yet; refreshes first when it is not. OAuthProblem when
        there is none to give (never logged in, or the refresh failed and the old lapsed)."""
        with self._lock:
            now = self.clock()
            if self._unsaved is not None:
                with self.store.locked():
                    self._save(self._unsaved, now)
            record = self._record or self._load()
            if record.access_token and now < record.expires_at - _margin(record):
                return record.access_token
            try:
                if self._last_problem is not None and now < self._retry_at:
                    raise self._last_problem
                return self._refresh(record, now).access_token
            except OAuthProblem:
                if record.access_token and now < record.expires_at:
                    return record.access_token  # refreshing early failed: this one still works
                raise

    def invalidate(self) -> None:
        """The server refused the token, or dropped the session: refresh at the next use."""
        with self._lock:
            self._retry_at = 0.0
            if self._record is not None:
                self._record = replace(self._record, access_token="", expires_at=0.0)

    def _load(self) -> TokenRecord:
        record = self.store.load()
        if record is None:
            raise OAuthProblem(f"no {self.mailbox} token: run `ticketd oauth login "
                               f"{self.mailbox}`", permanent=True, error="no_login")
        self._record = record
        return record

    def _refresh(self, record: TokenRecord, now: float) -> TokenRecord:
        with self.store.locked():
            return self._refresh_locked(record, now)

    def _refresh_locked(self, record: TokenRecord, now: float) -> TokenRecord:
        if self._unsaved is not None and not self._save(self._unsaved, now):
            on_disk = None  # the file holds a refresh token already spent: ours is newer
        else:
            on_disk = self.store.load()
        if on_disk is not None and on_disk.refresh_token != record.refresh_token:
            record = on_disk  # a new login, or another process refreshed, since we read it
            if record.access_token and now < record.expires_at - _margin(record):
                self._record, self._failing_since, self._last_problem = record, None, None
                metrics.OAUTH_TOKEN_EXPIRY.labels(self.mailbox).set(record.expires_at)
                self._tell("refreshed", record)
                return record
        try:
            fresh = refresh(self.client, record.refresh_token, now)
        except OAuthProblem as problem:
            self._failing_since = self._failing_since or now
            self._record, self._last_problem = record, problem
            self._retry_at = now + RETRY_SECONDS
            metrics.OAUTH_REFRESH_FAILURES.labels(self.mailbox, problem.error or "network").inc()
            log.warning("oauth refresh failed", extra={"fields": {
                "mailbox": self.mailbox, "error": str(problem), "permanent": problem.permanent}})
            self._tell("failed", problem, record, self._failing_since)
            raise
        # In memory first: the provider may have spent the old refresh token already.
        self._record, self._failing_since, self._last_problem = fresh, None, None
        metrics.OAUTH_TOKEN_EXPIRY.labels(self.mailbox).set(fresh.expires_at)
        log.info("oauth token refreshed", extra={"fields": {
            "mailbox": self.mailbox, "rotated": fresh.refresh_token != record.refresh_token,
            "valid_for": f"{fresh.expires_at - now:.0f}s"}})
        self._save(fresh, now)
        return fresh

    def _save(self, record: TokenRecord, now: float) -> bool:
        """Write the record under the file lock held by the caller. A failure keeps it as
        unsaved (retried at the next call) and is told like a failed refresh."""
        try:
            self.store.save(record)
        except OSError as err:
            first = self._unsaved is None
            self._unsaved = record
            self._save_failing_since = now if first else self._save_failing_since
            problem = OAuthProblem(
                f"the refreshed {self.mailbox} token could not be saved "
                f"({err.strerror or type(err).__name__}); kept in memory, saved again at the "
                f"next use: free the disk before a restart", permanent=False,
                error="save_failed")
            metrics.OAUTH_REFRESH_FAILURES.labels(self.mailbox, "save_failed").inc()
            log.error("oauth token not saved", extra={"fields": {
                "mailbox": self.mailbox, "error": err.strerror or type(err).__name__}})
            self._tell("failed", problem, record, self._save_failing_since)
            return False
        self._unsaved = None
        self._tell("refreshed", record)
        return True

    def _tell(self, what: str, *args: Any) -> None:
        """The listener's call; its failure (the database of the ops mail is down) is logged
        and does not take the token from the caller."""
        if self.listener is None:
            return
        try:
            getattr(self.listener, what)(self.mailbox, *args)
        except Exception as err:  # noqa: BLE001 - a report must not cost the token
            # The type only: a database error's text can carry statement parameters.
            log.error("oauth listener failed", extra={"fields": {
                "mailbox": self.mailbox, "call": what, "error": type(err).__name__}})


def _margin(record: TokenRecord) -> float:
    lifetime = record.expires_at - record.obtained_at if record.obtained_at else 3600.0
    return min(REFRESH_MARGIN, max(lifetime, 0.0) / 2)


def fingerprint(refresh_token: str) -> str:
    """Names a refresh token in a Message-ID without revealing it."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()[:16]


# -- telling people ---------------------------------------------------------------------------

class RefreshWatch:
    """What a failing refresh does besides the metric: a line in systemd's STATUS (through
    `on_change`), and one mail to ops through the outbox per refresh token and class of
    failure (refused, unreachable, unsaved). The mail's Message-ID is made from both, and
    the outbox refuses a second row with the same one: a retry, a restart or a second
    daemon sends no second mail."""

    def __init__(self, sessions: sessionmaker[Session] | None, ops_address: str | None,
                 from_address: str, *, on_change: Callable[[], None] = lambda: None,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.sessions = sessions
        self.ops_address = ops_address
        self.from_address = from_address or ops_address or ""
        self.on_change = on_change
        self.now = now
        self.problems: dict[str, str] = {}
        self.reports = 0  # ops mails queued by this process

    def refreshed(self, mailbox: str, record: TokenRecord) -> None:
        if self.problems.pop(mailbox, None) is not None:
            self.on_change()

    def failed(self, mailbox: str, problem: OAuthProblem, record: TokenRecord | None,
               since: float) -> None:
        action = f"run `ticketd oauth login {mailbox}`" if problem.permanent else "retrying"
        self.problems[mailbox] = f"oauth {mailbox}: {problem} ({action})"
        self.on_change()
        lasted = self.now().timestamp() - since
        if record is not None and (problem.permanent or lasted >= REPORT_AFTER):
            self._report(mailbox, problem, fingerprint(record.refresh_token))

    def status(self) -> str:
        return "; ".join(self.problems[name] for name in sorted(self.problems))

    def _report(self, mailbox: str, problem: OAuthProblem, token_id: str) -> None:
        if self.sessions is None or not self.ops_address:
            return
        message_id, raw = refresh_failure_notice(
            mailbox, str(problem), token_id, to=self.ops_address, sender=self.from_address,
            now=self.now(), permanent=problem.permanent, error=problem.error)
        try:
            with self.sessions.begin() as session:
                outbox.enqueue(session, raw=raw, message_id=message_id, kind="ops",
                               envelope_from=self.from_address, recipients=[self.ops_address],
                               now=self.now())
        except IntegrityError:
            return  # this token's failure of this class was reported already
        self.reports += 1
        log.error("oauth refresh failing: ops told", extra={"fields": {"mailbox": mailbox}})


def refresh_failure_notice(mailbox: str, problem: str, token_id: str, *, to: str, sender: str,
                           now: datetime, permanent: bool,
                           error: str = "") -> tuple[str, bytes]:
    """(Message-ID, bytes) of the one report that a mailbox's OAuth refresh stopped working.

    The Message-ID names the token and the class of the failure: an outage reported once
    must not hide the revocation of the same token weeks later (Google never rotates it)."""
    domain = sender.rpartition("@")[2] or "localhost"
    kind = "refused" if permanent else "unsaved" if error == "save_failed" else "unreachable"
    # Not make_msgid (time and randomness): the report must be the same mail every time.
    message_id = f"<oauth-refresh-{kind}-{mailbox}-{token_id}@{domain}>"
    subject = {
        "refused": f"ticketd: OAuth login of the {mailbox} mailbox needs renewing",
        "unsaved": f"ticketd: OAuth token of the {mailbox} mailbox could not be saved",
        "unreachable": f"ticketd: OAuth token endpoint unreachable for the {mailbox} mailbox",
    }[kind]
    stalled = "Until this is fixed, mail is not " + (
        "fetched." if mailbox == "imap" else "sent; it waits in the outbox.")
    if permanent:
        advice = [f"Log in again on the server: ticketd oauth login {mailbox}",
                  "The daemon picks up the new token by itself; no restart is needed."]
    elif kind == "unsaved":
        stalled = "Mail goes on for now: the new token is held in memory only."
        advice = ["Free space in the state directory; the daemon writes the token at its next",
                  "use. A restart before that loses it, and then a new login is needed."]
    else:
        advice = ["The token endpoint has been unreachable (or failing) for a while; the",
                  "login itself may be fine. Check the network, proxy and the provider's",
                  "status page. The daemon keeps retrying and resumes by itself."]
    text = "\n".join([
        f"ticketd could not save the refreshed OAuth 2 token of its {mailbox} mailbox:"
        if kind == "unsaved" else
        f"ticketd cannot refresh the OAuth 2 access token of its {mailbox} mailbox:",
        "",
        f"    {problem}",
        "",
        stalled,
        *advice,
        "",
        "This is the only mail about this failure of this token; systemctl status ticketd",
        "and the metric ticketd_oauth_refresh_failures_total show whether it goes on.",
    ])
    return message_id, ops_notice(sender=sender, to=(to,), subject=subject,
                                  message_id=message_id, now=now, text=text)


# -- wiring ------------------------------------------------------------------------------------

def store_for(state_directory: Path, mailbox: str,
              master_keys: tuple[bytes, ...] = ()) -> TokenStore:
    masters = MasterKeys.of(master_keys) if master_keys else None
    return TokenStore.in_state_directory(state_directory, mailbox, masters)


class Keepers:
    """The process's keepers, one per mailbox and settings: a reload that changes nothing of
    a mailbox's OAuth keeps its keeper (and the token in hand)."""

    def __init__(self, listener: Listener | None = None) -> None:
        self.listener = listener
        self._kept: dict[str, tuple[tuple[Any, ...], TokenKeeper]] = {}
        self._lock = threading.Lock()

    def keeper(self, settings: Any, mailbox: str) -> TokenKeeper:  # config.Settings
        # "smtp", or a mailbox watched: "imap" ([imap]) or a [[mailboxes]] name
        section = settings.smtp if mailbox == "smtp" else settings.mailbox(mailbox)
        client = OAuthClient.from_section(mailbox, section)
        store = store_for(Path(settings.storage.path), mailbox, settings.privacy.master_keys)
        key = (client, store)
        with self._lock:
            kept = self._kept.get(mailbox)
            if kept is None or kept[0] != key:
                kept = (key, TokenKeeper(client, store, listener=self))
                self._kept[mailbox] = kept
            return kept[1]

    def retry_now(self) -> None:
        """A person acted (SIGHUP): the next use refreshes at once, without the pause."""
        with self._lock:
            keepers = [keeper for _, keeper in self._kept.values()]
        for keeper in keepers:
            keeper.invalidate()

    def refreshed(self, mailbox: str, record: TokenRecord) -> None:
        if self.listener:
            self.listener.refreshed(mailbox, record)

    def failed(self, mailbox: str, problem: OAuthProblem, record: TokenRecord | None,
               since: float) -> None:
        if self.listener:
            self.listener.failed(mailbox, problem, record, since)
