"""The SMTP transport: aiosmtplib, one connection per batch, TLS verified, answers classified.

Errors tell the outbox what to do: a TemporaryDeliveryError is tried again later, a
PermanentDeliveryError is final. The seconds-long retries of a connection that failed
happen here (tenacity); the hours-long retry schedule is the outbox's.

    async with transport.session() as smtp:
        result = await smtp.send("support@example.com", ["player@mail.test"], raw)
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, Protocol

import aiosmtplib
from aiosmtplib import (
    SMTPException,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from config.schema import SmtpSettings, is_loopback

log = logging.getLogger(__name__)

SERVICE_CLOSING = 421  # the server is going away; it closes the connection after saying so


@dataclass(frozen=True)
class SendResult:
    """Who took the mail, and who refused it: recipient -> "code message"."""

    accepted: list[str]
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def temporarily_refused(self) -> list[str]:
        return [r for r, reply in self.refused.items() if is_temporary(reply)]

    @property
    def permanently_refused(self) -> dict[str, str]:
        return {r: reply for r, reply in self.refused.items() if not is_temporary(reply)}


def is_temporary(reply: str) -> bool:
    """A "4xx ..." reply: the same recipient may succeed later."""
    return reply[:1] == "4"


class DeliveryError(Exception):
    """The mail was not taken. `refused` holds the recipients' replies when every one of
    them was refused at RCPT (then each recipient decides alone what happens to it)."""

    def __init__(self, message: str, *, refused: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.refused = refused or {}


class TemporaryDeliveryError(DeliveryError):
    """4xx, a lost connection, a timeout: try again later."""


class ServerUnavailable(TemporaryDeliveryError):
    """No usable connection (refused, timed out, TLS or AUTH failed): every other mail of
    the batch would fail the same way, so the caller need not try them now."""


class TokenUnavailable(ServerUnavailable):
    """No OAuth 2 access token could be had (the refresh failed): every mail waits."""


class PermanentDeliveryError(DeliveryError):
    """5xx on MAIL or DATA, or every recipient refused with 5xx: trying again is useless."""


class TokenSource(Protocol):
    """Fresh OAuth 2 access tokens (daemon.oauth.TokenKeeper); blocking, so called in a
    worker thread."""

    def access_token(self) -> str: ...
    def invalidate(self) -> None: ...


@dataclass(frozen=True)
class SmtpTransport:
    host: str
    port: int
    tls: Literal["implicit", "starttls", "none"] = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    oauth2_token: str | None = field(default=None, repr=False)
    oauth2_tokens: TokenSource | None = field(default=None, repr=False, compare=False)
    ca_file: str | None = None  # trust these certificates instead of the system store
    timeout: float = 30
    local_hostname: str | None = None  # EHLO name; None: this host's FQDN
    connect_attempts: int = 3
    connect_wait: tuple[float, float] = (0.5, 4.0)  # seconds between connection attempts

    def __post_init__(self) -> None:
        # The config checks these too; a transport built by hand must not bypass them.
        if self.tls == "none" and not is_loopback(self.host):
            raise ValueError('tls = "none" is allowed only to a loopback address')
        if (self.oauth2_token or self.oauth2_tokens) and not self.username:
            raise ValueError("XOAUTH2 needs the username the token was issued for")

    @classmethod
    def from_settings(cls, smtp: SmtpSettings, **overrides: Any) -> SmtpTransport:
        def secret(value: Any) -> str | None:
            return value.get_secret_value() if value is not None else None

        return cls(host=smtp.host, port=smtp.port, tls=smtp.tls, username=smtp.username,
                   password=secret(smtp.password), oauth2_token=secret(smtp.oauth2_token),
                   ca_file=str(smtp.ca_file) if smtp.ca_file else None,
                   timeout=smtp.timeout, **overrides)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[SmtpSession]:
        """One connection for a batch, opened at the first send, closed with QUIT at the end."""
        smtp = SmtpSession(self)
        try:
            yield smtp
        finally:
            await smtp.close()

    def tls_context(self) -> ssl.SSLContext | None:
        if self.tls == "none":
            return None
        # create_default_context verifies the certificate and the host name.
        return ssl.create_default_context(cafile=self.ca_file)


class _ClosedBeforeMail(Exception):
    """The reused connection was gone before the server took anything of this mail."""


class SmtpSession:
    def __init__(self, transport: SmtpTransport) -> None:
        self._transport = transport
        self._smtp: aiosmtplib.SMTP | None = None
        self.connections = 0  # connections opened by this session (for tests and the bench)

    async def send(self, envelope_from: str, recipients: Sequence[str], raw: bytes) -> SendResult:
        """Hand one mail to the server; raises a DeliveryError when no recipient took it."""
        try:
            return await self._transaction(await self._connected(), envelope_from, recipients, raw)
        except _ClosedBeforeMail:
            # An idle connection the server dropped, or a 421 at MAIL: nothing was handed
            # over yet, so this mail goes on a fresh connection right away.
            smtp = await self._connected()
            try:
                return await self._transaction(smtp, envelope_from, recipients, raw)
            except _ClosedBeforeMail as err:
                raise TemporaryDeliveryError(f"server closed the connection: {err}") from None

    async def connect(self) -> None:
        """Open (and log in) now rather than at the first send: `ticketd doctor` uses it."""
        await self._connected()

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None or not smtp.is_connected:
            return
        try:
            await smtp.quit(timeout=min(self._transport.timeout, 5))
        except (SMTPException, OSError):
            smtp.close()

    # -- the connection ------------------------------------------------------------------

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        low, high = self._transport.connect_wait
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._transport.connect_attempts),
                wait=wait_random_exponential(multiplier=low, min=low, max=high),
                retry=retry_if_exception(_worth_reconnecting),
                before_sleep=lambda state: log.info("smtp connection failed, retrying", extra={
                    "fields": {"error": _describe(state.outcome.exception()),
                               "attempt": state.attempt_number}}),
                reraise=True,
            ):
                with attempt:
                    self._smtp = await self._open()
        except (SMTPException, OSError) as err:
            raise ServerUnavailable(_describe(err) + tls_mode_hint(self._transport, err)) from err
        assert self._smtp is not None
        return self._smtp

    async def _open(self) -> aiosmtplib.SMTP:
        t = self._transport
        smtp = aiosmtplib.SMTP(
            hostname=t.host, port=t.port, timeout=t.timeout,
            local_hostname=t.local_hostname or await asyncio.to_thread(_fqdn),
            use_tls=t.tls == "implicit", start_tls=t.tls == "starttls",
            tls_context=t.tls_context(),
        )
        await smtp.connect()
        try:
            await _ehlo(smtp)
            await self._authenticate(smtp)
        except BaseException:
            smtp.close()
            raise
        self.connections += 1
        log.debug("smtp connected",
                  extra={"fields": {"host": t.host, "port": t.port, "tls": t.tls}})
        return smtp

    async def _authenticate(self, smtp: aiosmtplib.SMTP) -> None:
        t = self._transport
        if t.oauth2_tokens is not None:
            await _refreshing_xoauth2(smtp, t.username or "", t.oauth2_tokens)
        elif t.oauth2_token:
            assert t.username is not None
            # Explicit AUTH XOAUTH2: aiosmtplib's login() only tries password mechanisms.
            await smtp.auth_xoauth2(t.username, t.oauth2_token)
        elif t.username:
            await smtp.login(t.username, t.password or "")  # PLAIN or LOGIN, as offered

    # -- one mail ------------------------------------------------------------------------

    async def _transaction(self, smtp: aiosmtplib.SMTP, envelope_from: str,
                           recipients: Sequence[str], raw: bytes) -> SendResult:
        options, encoding = _mail_options(smtp, envelope_from, recipients, raw)
        try:
            await self._mail(smtp, envelope_from, options, encoding)
            refused = await _recipients(smtp, recipients, encoding)
            accepted = [r for r in recipients if r not in refused]
            if not accepted:
                await _reset(smtp)
                raise _all_refused(refused)
            await _data(smtp, raw)
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as err:
            # aiosmtplib has closed the connection; the next send opens another.
            raise TemporaryDeliveryError(f"connection lost: {_describe(err)}") from err
        return SendResult(accepted, refused)

    async def _mail(self, smtp: aiosmtplib.SMTP, envelope_from: str, options: list[str],
                    encoding: str) -> None:
        try:
            await smtp.mail(envelope_from, options=options, encoding=encoding)
        except SMTPServerDisconnected as err:
            raise _ClosedBeforeMail(_describe(err)) from err
        except SMTPResponseException as err:
            if err.code == SERVICE_CLOSING:
                raise _ClosedBeforeMail(_reply(err)) from err
            await _reset(smtp)
            raise _classified("MAIL FROM", err) from err


async def _refreshing_xoauth2(smtp: aiosmtplib.SMTP, username: str,
                             tokens: TokenSource) -> None:
    """A token taken for this connection; refused, it is refreshed and tried once more."""
    try:
        await smtp.auth_xoauth2(username, await _token(tokens))
    except SMTPResponseException as err:
        if err.code not in (334, 535):  # 334: the server's JSON challenge, then 535
            raise
        log.info("smtp refused the access token, refreshing it")
        tokens.invalidate()
        if not smtp.is_connected:
            await smtp.connect()
            await _ehlo(smtp)
        await smtp.auth_xoauth2(username, await _token(tokens))


async def _token(tokens: TokenSource) -> str:
    try:
        return await asyncio.to_thread(tokens.access_token)
    except Exception as err:  # daemon.oauth.OAuthProblem, which this layer cannot name
        raise TokenUnavailable(str(err)) from err


async def _recipients(smtp: aiosmtplib.SMTP, recipients: Sequence[str],
                      encoding: str) -> dict[str, str]:
    refused: dict[str, str] = {}
    for address in recipients:
        try:
            await smtp.rcpt(address, encoding=encoding)
        except SMTPRecipientRefused as err:
            if err.code == SERVICE_CLOSING:
                raise TemporaryDeliveryError(f"RCPT TO: {_reply(err)}") from err
            refused[address] = _reply(err)
    return refused


async def _data(smtp: aiosmtplib.SMTP, raw: bytes) -> None:
    try:
        await smtp.data(raw)
    except SMTPResponseException as err:
        await _reset(smtp)
        raise _classified("DATA", err) from err


def _mail_options(smtp: aiosmtplib.SMTP, envelope_from: str, recipients: Sequence[str],
                  raw: bytes) -> tuple[list[str], str]:
    options = []
    if smtp.supports_extension("size"):
        bare_newlines = raw.count(b"\n") - raw.count(b"\r\n")  # sent as CRLF
        options.append(f"SIZE={len(raw) + bare_newlines}")
    if not raw.isascii() and smtp.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if all(a.isascii() for a in (envelope_from, *recipients)):
        return options, "ascii"
    if not smtp.supports_extension("smtputf8"):
        raise PermanentDeliveryError("non-ASCII address, and the server has no SMTPUTF8")
    return [*options, "SMTPUTF8"], "utf-8"


async def _ehlo(smtp: aiosmtplib.SMTP) -> None:
    # Learn the extensions (SIZE, SMTPUTF8, AUTH) before the first mail needs them.
    if smtp.is_ehlo_or_helo_needed:
        try:
            await smtp.ehlo()
        except aiosmtplib.SMTPHeloError:
            await smtp.helo()


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    """Clear the envelope so the connection can carry the next mail; drop it if that fails."""
    if not smtp.is_connected:
        return
    try:
        await smtp.rset()
    except (SMTPException, OSError):
        smtp.close()


def _all_refused(refused: dict[str, str]) -> DeliveryError:
    summary = "; ".join(f"{r}: {reply}" for r, reply in refused.items())
    if any(is_temporary(reply) for reply in refused.values()):
        return TemporaryDeliveryError(f"all recipients refused: {summary}", refused=refused)
    return PermanentDeliveryError(f"all recipients refused: {summary}", refused=refused)


def _classified(command: str, err: SMTPResponseException) -> DeliveryError:
    kind = PermanentDeliveryError if 500 <= err.code < 600 else TemporaryDeliveryError
    return kind(f"{command}: {_reply(err)}")


def _worth_reconnecting(err: BaseException) -> bool:
    """Connection trouble may pass in seconds; a bad certificate, AUTH refused or a 5xx
    greeting will not."""
    if isinstance(err, ssl.SSLError) or isinstance(err.__cause__, ssl.SSLError):
        return False
    if isinstance(err, SMTPResponseException):
        return 400 <= err.code < 500
    return isinstance(err, (aiosmtplib.SMTPConnectError, SMTPServerDisconnected,
                            SMTPTimeoutError, ConnectionError, TimeoutError))


def _reply(err: SMTPResponseException) -> str:
    return f"{err.code} {' '.join(err.message.split())}"[:500]


def tls_mode_hint(t: SmtpTransport, err: BaseException) -> str:
    """A wrong TLS mode shows as a bare timeout or a TLS error; name the likely mistake.

    A client that waits for a greeting on an implicit-TLS port waits forever: that server
    says nothing until the client's TLS handshake. A client that starts TLS on a plain
    port reads the plain greeting as a broken TLS record.
    """
    timed_out = isinstance(err, SMTPTimeoutError | TimeoutError | asyncio.TimeoutError)
    if timed_out and t.tls != "implicit":
        return (f"; no greeting from {t.host}:{t.port} with tls = \"{t.tls}\": a port that "
                f"expects implicit TLS (usually 465) says nothing until the client starts TLS: "
                f"is tls = \"implicit\" meant?")
    broken_tls = isinstance(err, ssl.SSLError) or isinstance(err.__cause__, ssl.SSLError)
    if t.tls == "implicit" and (broken_tls or timed_out) and \
            not isinstance(err, ssl.SSLCertVerificationError) and \
            not isinstance(err.__cause__, ssl.SSLCertVerificationError):
        return (f"; the TLS handshake with {t.host}:{t.port} (tls = \"implicit\") failed: the "
                f"port may speak plain SMTP with STARTTLS (usually 587 or 25): is "
                f"tls = \"starttls\" meant?")
    return ""


def _describe(err: BaseException | None) -> str:
    if err is None:
        return "-"
    if isinstance(err, SMTPResponseException):
        return f"{type(err).__name__}: {_reply(err)}"
    text = str(err).splitlines()[0][:300] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


@cache
def _fqdn() -> str:
    return socket.getfqdn()
