"""The settings schema: every section, key, default and check, in one place.

Models are frozen and forbid unknown keys, so a typo in the file is an error, not a
silently ignored line. Checks that involve two keys of a section are field validators
that read ``info.data`` (the keys declared above them), so that every mistake of a
file is reported in one go and each error names the key to fix.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import urllib.parse
from datetime import date, datetime, time, timedelta
from functools import cached_property
from itertools import pairwise
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .durations import parse_duration
from .redact import parse_url

DEFAULT_STORAGE_PATH = "/var/lib/ticketd"

# Secrets never come from the config file: each is read from its *_file key at load
# time, or given whole in the environment (TICKETD_IMAP__PASSWORD, ...).
SECRET_FILES = {"password_file": "password", "oauth2_token_file": "oauth2_token",
                "oauth2_client_secret_file": "oauth2_client_secret",
                "secret_file": "secret", "key_file": "key"}
# Keys whose value is never repeated in an error message or printed.
SENSITIVE_KEYS = frozenset(SECRET_FILES.values()) | {"url"}
MIN_KEY_BYTES = 16  # a signing key shorter than this is refused


class ShowsValue(ValueError):
    """A complaint that already shows the wrong value: no "(got ...)" is added to it."""


class AtKey(ValueError):
    """A complaint about a section that is really about one of its keys."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_host_port(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError('must be "host:port", e.g. "127.0.0.1:9465"')
    return host.strip("[]"), int(port)


def _in_range(low: int, high: int) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return AfterValidator(check)


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic would take true for 1
        raise ValueError("must be a number")
    return value


def _not_empty(value: Any) -> Any:
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not text or (isinstance(text, str) and not text.strip()):
        raise ValueError("must not be empty")
    return value


def _host(value: str) -> str:
    if not value or "/" in value or any(c.isspace() for c in value):
        raise ValueError("must be a host name or IP address (not a URL)")
    return value


def _address(value: str) -> str:
    local, at, domain = value.partition("@")
    if not (local and at and domain) or "@" in domain or any(c.isspace() for c in value):
        raise ValueError('must be a mail address like "support@example.com"')
    return value


def _database_url(value: str) -> str:
    scheme = value.partition("://")[0].partition("+")[0]
    if scheme not in ("sqlite", "postgresql") or "://" not in value:
        raise ValueError('must be a "sqlite:///..." or "postgresql://..." URL')
    parsed = parse_url(value)
    if parsed is None:
        raise ValueError("is not a URL SQLAlchemy can read")
    if "@" in (parsed.host or ""):
        # Read so, part of the password would be taken for the host name and shown in every
        # "could not translate host name" error.
        raise ValueError('has an "@" in its password: write it as %40 '
                         "(and / as %2F, : as %3A, % as %25)")
    return value


def _readable_file(path: Path) -> Path:
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise ShowsValue(f"cannot read {path}: {error.strerror}") from None
    return path


def _readable_dir(path: Path) -> Path:
    if not path.is_dir():
        raise ShowsValue(f"{path} is not a readable directory")
    return path


def _metrics_listen(value: str) -> str:
    if value:
        host, _ = split_host_port(value)
        if not is_loopback(host):
            raise ValueError("must listen on a loopback address (127.0.0.1, ::1, localhost)")
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _tls_none_only_to_loopback(tls: str, info: ValidationInfo) -> str:
    host = info.data.get("host")
    if tls == "none" and host is not None and not is_loopback(host):
        raise ShowsValue(f'"none" is allowed only when host is a loopback address '
                         f"(localhost, 127.0.0.0/8, ::1), not {host}")
    return tls


NonEmptyStr = Annotated[str, AfterValidator(_not_empty)]
Host = Annotated[str, AfterValidator(_host)]
Positive = Annotated[int, BeforeValidator(_not_bool), Field(gt=0)]
Seconds = Positive
Port = Annotated[int, BeforeValidator(_not_bool), _in_range(1, 65535)]
Tls = Literal["implicit", "starttls", "none"]
Secret = Annotated[SecretStr, AfterValidator(_not_empty)]
ReadableFile = Annotated[Path, AfterValidator(_readable_file)]
ReadableDir = Annotated[Path, AfterValidator(_readable_dir)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Priority = Literal["low", "normal", "high", "urgent"]


def _language_code(value: str) -> str:
    if not re.fullmatch(r"[a-z]{2,3}", value):
        raise ValueError('must be a language code such as "ru"')
    return value


def _subject_tag(value: str) -> str:
    if value.count("{number}") != 1 or not value.strip():
        raise ValueError('must contain "{number}" exactly once, e.g. "[#{number}]"')
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SupportSettings(Section):
    address: Annotated[str, AfterValidator(_address)] = "support@localhost"
    name: NonEmptyStr = "Support"
    default_language: NonEmptyStr = "en"


class DatabaseSettings(Section):
    # When unset, Settings fills in "sqlite:///<storage.path>/ticketd.db".
    url: Annotated[str, AfterValidator(_database_url)]
    echo: bool = False


class StorageSettings(Section):
    path: Path = Path(DEFAULT_STORAGE_PATH)


def _oauth2_url(value: str) -> str:
    if not value:
        return value
    # The host as the HTTP client will see it: a hand-made split was fooled by
    # "http://evil.example#@127.0.0.1/" (the "@" is in the fragment, not the authority).
    if any(c in value for c in "#\\") or any(c.isspace() for c in value):
        raise ValueError('must be an "https://..." URL without a fragment, "\\" or spaces')
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError('must be an "https://..." URL') from None
    scheme, host = parts.scheme, parts.hostname or ""
    if scheme not in ("https", "http") or not host:
        raise ValueError('must be an "https://..." URL')
    if scheme == "http" and not is_loopback(host):  # the client secret and tokens travel here
        raise ValueError('"http://" is allowed only to a loopback address; use "https://"')
    return value


OAuth2Url = Annotated[str, AfterValidator(_oauth2_url)]


class OAuth2Keys(Section):
    """The keys of `auth = "oauth2"`, the same in [imap] and [smtp]: the provider preset gives
    the endpoints and scopes; the other keys override it (a test's local endpoint, another
    provider with "custom")."""

    oauth2_provider: Literal["microsoft", "google", "custom"] = "microsoft"
    oauth2_client_id: str = ""
    oauth2_client_secret: Secret | None = None
    oauth2_client_secret_file: Path | None = None
    oauth2_tenant: NonEmptyStr = "organizations"  # Microsoft: a tenant id, domain, or this
    oauth2_token_url: OAuth2Url = ""  # "": the provider's
    oauth2_device_url: OAuth2Url = ""  # "": the provider's (Google has none for mail)
    oauth2_auth_url: OAuth2Url = ""  # "": the provider's
    oauth2_scopes: tuple[NonEmptyStr, ...] = ()  # (): the provider's for mail

    @model_validator(mode="after")
    def _oauth2_complete(self) -> OAuth2Keys:
        if getattr(self, "auth", None) != "oauth2":
            return self
        if not self.oauth2_client_id.strip():
            raise AtKey("oauth2_client_id", 'required when auth = "oauth2": the application '
                        "(client) id of the app registration")
        if getattr(self, "username", "") is None:
            raise AtKey("username", 'required when auth = "oauth2": the account the token '
                        "is for")
        if self.oauth2_provider == "custom" and not self.oauth2_token_url:
            raise AtKey("oauth2_token_url", 'required when oauth2_provider = "custom"')
        return self


class ImapSettings(OAuth2Keys):
    host: Host
    port: Port = 993
    tls: Tls = "implicit"
    username: NonEmptyStr
    # "xoauth2": a bearer token from oauth2_token_file, refreshed by someone else;
    # "oauth2": ticketd refreshes it from the refresh token of `ticketd oauth login imap`.
    auth: Literal["password", "xoauth2", "oauth2"] = "password"
    oauth2_mechanism: Literal["xoauth2", "oauthbearer"] = "xoauth2"
    # The secrets are declared before their *_file keys, whose check reads them.
    password: Secret | None = None
    oauth2_token: Secret | None = None
    password_file: Path | None = Field(None, validate_default=True)
    oauth2_token_file: Path | None = Field(None, validate_default=True)
    ca_file: ReadableFile | None = None
    folder: NonEmptyStr = "INBOX"
    processed_folder: NonEmptyStr = "Processed"
    quarantine_folder: NonEmptyStr = "Quarantine"
    junk_folder: NonEmptyStr = "Junk"  # where mail our MTA's spam filter marked is moved
    idle_timeout: Annotated[Seconds, _in_range(10, 1740)] = 300  # RFC 2177: re-IDLE before 29 min
    poll_interval: Seconds = 30
    batch_size: Annotated[Positive, _in_range(1, 1000)] = 50
    timeout: Seconds = 30

    _tls = field_validator("tls")(_tls_none_only_to_loopback)

    @field_validator("password_file", "oauth2_token_file")
    @classmethod
    def _secret_for_auth(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        auth, secret, env = {
            "password_file": ("password", "password", "TICKETD_IMAP__PASSWORD"),
            "oauth2_token_file": ("xoauth2", "oauth2_token", "TICKETD_IMAP__OAUTH2_TOKEN"),
        }[info.field_name or ""]
        if info.data.get("auth") == auth and secret in info.data and info.data[secret] is None:
            raise ValueError(f'required when auth = "{auth}" (or set {env})')
        return path


class SmtpSettings(OAuth2Keys):
    host: Host
    port: Port = 587
    tls: Tls = "starttls"
    username: NonEmptyStr | None = None
    # "password": the password, or the static token of oauth2_token_file; "oauth2": a token
    # refreshed from the refresh token of `ticketd oauth login smtp`, fresh per connection.
    auth: Literal["password", "oauth2"] = "password"
    password: Secret | None = None
    oauth2_token: Secret | None = None
    password_file: Path | None = Field(None, validate_default=True)
    oauth2_token_file: Path | None = None
    ca_file: ReadableFile | None = None
    timeout: Seconds = 30

    _tls = field_validator("tls")(_tls_none_only_to_loopback)

    @field_validator("password_file")
    @classmethod
    def _secret_for_username(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        data = info.data
        secrets = [data[key] for key in ("password", "oauth2_token") if key in data]
        if data.get("auth") == "oauth2":  # OAuth2Keys checks what it needs
            return path
        if data.get("username") and secrets == [None, None]:
            raise ValueError("required when username is set "
                             "(or oauth2_token_file, or TICKETD_SMTP__PASSWORD)")
        return path


def _keys_long_enough(secret: SecretStr | None) -> SecretStr | None:
    # A short HMAC key can be found by trying them all offline against anything it signed
    # (a Message-ID, a reply token, a webhook), and then forged.
    text = secret.get_secret_value() if secret else ""
    for number, line in enumerate((line.strip() for line in text.splitlines()), 1):
        if line and len(line.encode()) < MIN_KEY_BYTES:
            raise ValueError(f"signing key on line {number} is {len(line.encode())} bytes, "
                             f"under the {MIN_KEY_BYTES} a key needs not to be guessed; make "
                             f"one with: head -c 32 /dev/urandom | base64")
    return secret


WEBHOOK_EVENTS = ("self_exclusion.requested", "ticket.created", "sla.breached")


def _webhook_url(value: str) -> str:
    parsed = urlsplit(value)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise ValueError('must be an "https://host/path" URL')
    if parsed.username is not None or parsed.password is not None:
        raise ValueError("must not carry credentials: the signature is what proves the sender")
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        raise ValueError("must be https:// unless the host is a loopback address "
                         "(localhost, 127.0.0.0/8, ::1)")
    return value


class WebhooksSettings(Section):
    """Signed events to the operator's platform, sent through the outbox like mail."""

    url: Annotated[str, AfterValidator(_webhook_url)]
    # HMAC-SHA256 keys, one per line, newest first: each signs (a receiver accepts any)
    secret: Secret | None = None
    secret_file: Path | None = Field(None, validate_default=True)
    events: tuple[Literal[WEBHOOK_EVENTS], ...] = WEBHOOK_EVENTS  # type: ignore[valid-type]
    timeout: Seconds = 10
    ca_file: ReadableFile | None = None  # the platform's CA instead of the system's

    _keys = field_validator("secret")(_keys_long_enough)

    @field_validator("secret_file")
    @classmethod
    def _secret_required(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if "secret" in info.data and info.data["secret"] is None:
            raise ValueError("required: a file holding the signing key "
                             "(or set TICKETD_WEBHOOKS__SECRET)")
        return path

    @property
    def keys(self) -> tuple[bytes, ...]:
        """Signing keys, newest first."""
        text = self.secret.get_secret_value() if self.secret else ""
        return tuple(line.strip().encode() for line in text.splitlines() if line.strip())


class OutboxSettings(Section):
    batch_size: Annotated[Positive, _in_range(1, 1000)] = 50
    commit_every: Annotated[Positive, _in_range(1, 100)] = 1
    interval: Duration = timedelta(seconds=5)
    lease: Duration = timedelta(minutes=5)
    lifetime: Duration = timedelta(days=5)
    ops_address: Annotated[str, AfterValidator(_address)] | None = None


class SecuritySettings(Section):
    secret: Secret | None = None
    secret_file: Path | None = None
    authserv_id: str = ""  # the authserv-id of our own MTA's Authentication-Results; "" = none

    _keys = field_validator("secret")(_keys_long_enough)

    @property
    def keys(self) -> tuple[bytes, ...]:
        """Signing keys, newest first: sign with keys[0], accept any. () when none is set."""
        text = self.secret.get_secret_value() if self.secret else ""
        return tuple(line.strip().encode() for line in text.splitlines() if line.strip())


MASTER_KEY_BYTES = 32


def master_key(line: str) -> bytes | None:
    """One line of the master key file: base64 or hex of 32 random bytes; else None."""
    for decode in (bytes.fromhex, lambda text: base64.b64decode(text, validate=True)):
        try:
            secret = decode(line)
        except (ValueError, binascii.Error):
            continue
        if len(secret) == MASTER_KEY_BYTES:
            return secret
    return None


def _master_keys(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        lines = [line.strip() for line in value.get_secret_value().splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
        if not lines:
            raise ValueError("holds no key")
        bad = [n for n, line in enumerate(lines, 1) if master_key(line) is None]
        if bad:
            raise ValueError(f"key {bad[0]} is not base64 or hex of {MASTER_KEY_BYTES} bytes "
                             "(make one with: head -c 32 /dev/urandom | base64)")
    return value


class PrivacySettings(Section):
    # Master keys that wrap the contacts' data keys, one per line, newest first; None: off.
    key: Annotated[SecretStr | None, AfterValidator(_master_keys)] = None
    key_file: Path | None = None

    @property
    def master_keys(self) -> tuple[bytes, ...]:
        """The master keys, newest first; () when encryption at rest is off."""
        if self.key is None:
            return ()
        lines = (line.strip() for line in self.key.get_secret_value().splitlines())
        return tuple(k for line in lines if line and not line.startswith("#")
                     if (k := master_key(line)) is not None)


class LimitsSettings(Section):
    max_message_bytes: Positive = 40 * 1024 * 1024
    max_attachments: Positive = 100
    max_attachment_bytes: Positive = 30 * 1024 * 1024
    max_depth: Positive = 30
    max_parts: Positive = 1000


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WORK_SPAN = re.compile(r"([01]?[0-9]|2[0-4]):([0-5][0-9])-([01]?[0-9]|2[0-4]):([0-5][0-9])")
_WORK_DAY_FORM = 'must be "HH:MM-HH:MM" spans separated by commas, e.g. "09:00-13:00, 14:00-18:00"'


def work_day_spans(text: str) -> tuple[tuple[time, time], ...]:
    """"09:00-13:00, 14:00-18:00" as sorted (begin, end) pairs; "" is a closed day.

    An end of "24:00" (or "00:00") is the end of the day, written time(0) as
    responders.sla.BusinessHours expects.
    """
    spans = []
    for part in (p.replace(" ", "") for p in text.split(",") if p.strip()):
        found = _WORK_SPAN.fullmatch(part)
        if found is None:
            raise ValueError(_WORK_DAY_FORM)
        h1, m1, h2, m2 = map(int, found.groups())
        if h1 == 24 or (h2 == 24 and m2):
            raise ValueError(f"{part}: a day runs from 00:00 to 24:00")
        begin, end = time(h1, m1), time(h2 % 24, m2)
        if end != time(0) and end <= begin:
            raise ValueError(f"{part} ends before it starts")
        spans.append((begin, end))
    spans.sort()
    for (_, end), (begin, _) in pairwise(spans):
        if end == time(0) or end > begin:
            raise ValueError(f"spans overlap at {begin:%H:%M}")
    return tuple(spans)


def _work_day(text: str) -> str:
    work_day_spans(text)
    return text


WorkDay = Annotated[str, AfterValidator(_work_day)]


class BusinessHoursSettings(Section):
    """Working spans per weekday in [sla] timezone; a day left out is closed."""

    mon: WorkDay = ""
    tue: WorkDay = ""
    wed: WorkDay = ""
    thu: WorkDay = ""
    fri: WorkDay = ""
    sat: WorkDay = ""
    sun: WorkDay = ""

    @model_validator(mode="after")
    def _some_work(self) -> BusinessHoursSettings:
        # No working time at all would stop every clock for ever.
        if not any(self.weekly.values()):
            raise ValueError("no working time on any day; leave business_hours out for 24x7")
        return self

    @property
    def weekly(self) -> dict[int, tuple[tuple[time, time], ...]]:
        """Weekday (0 = Monday) to its spans, closed days left out."""
        days = {day: work_day_spans(getattr(self, name)) for day, name in enumerate(WEEKDAYS)}
        return {day: spans for day, spans in days.items() if spans}


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError('must be an IANA time zone, e.g. "Europe/Moscow" or "UTC"') from None
    return value


def _iso_date(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):  # a TOML date
        return value.isoformat()
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:  # 2027-02-30
            pass
    raise ValueError('must be a date written "YYYY-MM-DD"')


def _holiday_country(value: str) -> str:
    import holidays  # only a configured country needs the package

    code = value.strip().upper()
    if code not in holidays.list_supported_countries():
        raise ValueError('must be an ISO 3166 country code the "holidays" package knows, '
                         'e.g. "RU"')
    return code


def _whole_percent(value: Any) -> Any:
    if isinstance(value, bool | float):
        raise ValueError("must be a whole percentage from 1 to 99, e.g. 80 (not 0.8)")
    return value


class SlaSettings(Section):
    first_response: Duration = timedelta(hours=24)
    first_response_urgent: Duration = timedelta(hours=1)
    resolution: Duration = timedelta(hours=72)
    team_lead_address: Annotated[str, AfterValidator(_address)] | None = None
    head_of_support_address: Annotated[str, AfterValidator(_address)] | None = None
    warning_address: Annotated[str, AfterValidator(_address)] | None = None
    # A percentage rather than a share: the settings renderer writes integers, not floats.
    warn_at: Annotated[int, BeforeValidator(_whole_percent), _in_range(1, 99)] = 80
    level2_after: Duration = timedelta(hours=4)
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"
    business_hours: BusinessHoursSettings | None = None  # None: round the clock
    holidays: tuple[Annotated[str, BeforeValidator(_iso_date)], ...] = ()
    holiday_country: Annotated[str, AfterValidator(_holiday_country)] | None = None
    interval: Duration = timedelta(minutes=1)

    @property
    def holiday_dates(self) -> frozenset[date]:
        return frozenset(date.fromisoformat(day) for day in self.holidays)


class RetentionSettings(Section):
    """How long personal data is kept; each rule is off (kept for ever) until given a duration.
    Nothing a legal hold covers is ever swept (`ticketd privacy hold`)."""

    raw_mail: Duration | None = None  # raw .eml of mail stored on tickets, from its arrival
    attachments: Duration | None = None  # attachment files, from their message's arrival
    sent_mail: Duration | None = None  # the bytes of sent mail (outbox), from sending
    closed_tickets: Duration | None = None  # closed tickets anonymised, from closing
    rejected_mail: Duration | None = None  # raw .eml of quarantined/ignored/spam mail
    interval: Duration = timedelta(hours=1)  # between two sweeps of the daemon
    batch: Positive = 500  # rows per transaction


class AuditSettings(Section):
    seal_interval: Duration = timedelta(minutes=1)  # how often new events are chained


class ThreadingSettings(Section):
    subject_tag: Annotated[str, AfterValidator(_subject_tag)] = "[#{number}]"
    reopen_window: Duration = timedelta(days=14)  # a reply to a resolved ticket reopens it within this
    escalation_keywords: tuple[NonEmptyStr, ...] = (
        "escalate", "appeal", "обжаловать", "обжалование", "жалоба на решение", "апелляция",
        # the word each language's acknowledgement tells the player to reply with
        "оскаржити", "apellyatsiya", "apellyasiya", "itiraz", "Einspruch", "apelar", "recorrer",
    )


class RespondersSettings(Section):
    templates_dir: ReadableDir | None = None  # overrides for the packaged Jinja2 templates
    acknowledge: bool = True  # acknowledge new tickets (needs [smtp] and [security])
    auto_replies_per_10min: Positive = 10  # automatic mails to one address, at most
    auto_replies_per_day: Positive = 40
    # Replaces the ENGLISH paragraph of a final answer (where to go beyond us); "" takes it
    # from the template dispute.txt.j2 of the player's language. Kept so old configs load.
    dispute_text: str = ""


class AdrTranslation(Section):
    """The ADR entity as written in another language (unset: the English one)."""

    entity: NonEmptyStr | None = None
    url: NonEmptyStr | None = None
    address: NonEmptyStr | None = None


class ComplaintsSettings(Section):
    """The regulated complaint lifecycle (responders/complaint_profiles.py has the sources)."""

    profile: Literal["none", "ukgc", "mga", "cga"] = "none"
    adr_entity: NonEmptyStr | None = None  # required under a regulator's profile
    adr_url: NonEmptyStr | None = None
    adr_address: NonEmptyStr | None = None  # postal address, one line
    adr_translations: dict[Annotated[str, AfterValidator(_language_code)], AdrTranslation] = \
        Field(default_factory=dict)
    # Mail from these addresses is an ADR body's enquiry, not a player's complaint.
    adr_addresses: tuple[Annotated[str, AfterValidator(_address)], ...] = ()
    # Overrides of the profile's numbers; unset: the profile's.
    ack_deadline: Duration | None = None
    final_deadline: Duration | None = None
    reminders_before: tuple[Duration, ...] | None = None  # before the final deadline
    extension: Duration | None = None
    adr_enquiry_business_days: Positive | None = None
    rg_business_days: Positive | None = None
    deadline_action: Literal["send", "head_of_support"] = "send"

    @model_validator(mode="after")
    def _adr_named(self) -> ComplaintsSettings:
        if self.profile != "none" and not self.adr_entity:
            raise AtKey("adr_entity", f'required with profile = "{self.profile}": the ADR '
                        "entity your licence names, for the final-response letter")
        return self


class LoopSettings(Section):
    """Loop limits (DESIGN invariant 3): every mail sent because a mail came in counts."""

    per_ticket: Positive = 10  # automatic mails about one ticket within per_ticket_window
    per_ticket_window: Duration = timedelta(minutes=10)
    per_ticket_day: Positive = 20  # automatic mails about one ticket within per_ticket_day_window
    per_ticket_day_window: Duration = timedelta(days=1)  # a slow loop, under per_ticket, stops too
    per_address: Positive = 40  # to one player's (or any outside) address within the window
    per_address_window: Duration = timedelta(days=1)
    per_team_address: Positive = 400  # to one agent, staff or group address in that window
    responder_seconds: Seconds = 10  # a reply dated this soon after our mail to its sender: a machine
    repeat_window: Duration = timedelta(days=1)  # the same text again within it: a machine
    notify_every: Duration = timedelta(minutes=5)  # one notification per ticket, at most
    held_notices_per_hour: Positive = 3  # per claimed agent; then one summary, then none


class AgentSettings(Section):
    address: Annotated[str, AfterValidator(_address)]
    name: NonEmptyStr
    groups: tuple[NonEmptyStr, ...] = ()
    languages: tuple[NonEmptyStr, ...] = ("en",)


class TeamSettings(Section):
    agents: tuple[AgentSettings, ...] = ()
    # category -> group; a ticket's notifications go to its assignee, else its group
    routing: dict[str, NonEmptyStr] = Field(default_factory=lambda: {
        "refund": "payments", "bet_settlement": "payments", "self_exclusion": "responsible_gaming",
        "appeal": "team_leads", "data_protection": "data_protection"})
    default_group: NonEmptyStr = "support"
    # group -> a shared mailbox; without one a group's notifications go to each of its agents
    group_addresses: dict[str, Annotated[str, AfterValidator(_address)]] = Field(default_factory=dict)
    comment_address: Annotated[str, AfterValidator(_address)] | None = None  # mail here = note
    agent_auth: Literal["token", "token+authres"] = "token+authres"

    def agent(self, address: str) -> AgentSettings | None:
        address = address.lower()
        return next((a for a in self.agents if a.address.lower() == address), None)


def _spam_pattern(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as err:
        raise ShowsValue(f"not a regular expression: {err}") from None
    return pattern


def _host_port(value: str) -> str:
    if value:
        split_host_port(value)
    return value


class SpamSettings(Section):
    enabled: bool = True  # false: no spam header is trusted, every mail is handled as mail
    # header -> a regular expression (any case) that, matching the start of the topmost
    # value our side wrote, means spam; empty: the built-in SpamAssassin and Rspamd headers
    # (parsers/spam.py); a table here replaces the built-in one
    headers: dict[NonEmptyStr, Annotated[NonEmptyStr, AfterValidator(_spam_pattern)]] = Field(
        default_factory=dict)
    # our MTA's names as written after "by" in its Received headers; empty: only the topmost
    # Received header is ours
    trusted_hops: tuple[NonEmptyStr, ...] = ()


class ScanSettings(Section):
    enabled: bool = True  # false: nothing is scanned and no attachment is forwarded to agents
    # clamd's LocalSocket (Debian: /run/clamav/clamd.ctl), or tcp_address "host:port"
    socket: Path | None = Path("/run/clamav/clamd.ctl")
    tcp_address: Annotated[str, AfterValidator(_host_port)] = ""
    timeout: Seconds = 30
    # clamd unreachable: "hold" leaves a mail with attachments in the mailbox (a temporary
    # failure, tried again later); "store" stores it and forwards none of its attachments
    on_unavailable: Literal["hold", "store"] = "store"

    @property
    def address(self) -> tuple[str, int] | None:
        return split_host_port(self.tcp_address) if self.tcp_address else None


class ClassificationRule(Section):
    category: NonEmptyStr
    priority: Priority = "normal"
    keywords: Annotated[tuple[NonEmptyStr, ...], AfterValidator(_not_empty)]


class ClassificationSettings(Section):
    rules: tuple[ClassificationRule, ...] = ()  # empty: the built-in rules apply


class LoggingSettings(Section):
    format: Literal["kv", "json"] = "kv"
    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                     BeforeValidator(_upper)] = "INFO"


class MetricsSettings(Section):
    listen: Annotated[str, AfterValidator(_metrics_listen)] = ""  # "": no metrics endpoint

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to bind the metrics endpoint to, or None when it is off."""
        return split_host_port(self.listen) if self.listen else None


class ReportsSettings(Section):
    """The weekly digest of complaint figures to [sla] head_of_support_address."""

    digest: bool = False
    # When the digest of the ISO week just ended is due: this weekday and hour, UTC.
    digest_weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    digest_hour: Annotated[int, BeforeValidator(_not_bool), _in_range(0, 23)] = 8


DEFAULT_BRAND = "default"  # the brand of [support]: the desk's own name and address
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


def _brand_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError('must be 1-40 lower-case letters, digits, "-" or "_", e.g. "lucky"')
    return value


Name = Annotated[str, AfterValidator(_brand_name)]


class MailboxSettings(ImapSettings):
    """One of several mailboxes ([[mailboxes]]): the keys of [imap], a name, and the brand
    whose player mail arrives there."""

    name: Name
    brand: Name = DEFAULT_BRAND

    @property
    def lease_name(self) -> str:
        """What its lease and cursor are kept under: the folder itself, whatever its name."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"


class BrandSettings(Section):
    """One brand ([[brands]]): who the desk is to the players of one of the operator's sites.
    Unset keys take the desk's ([support], [responders], [complaints], [team])."""

    name: Name
    address: Annotated[str, AfterValidator(_address)]
    # other addresses that reach this brand (mail from them is ours, never a ticket)
    aliases: tuple[Annotated[str, AfterValidator(_address)], ...] = ()
    display_name: NonEmptyStr
    templates_dir: ReadableDir | None = None  # overrides; unset: [responders] templates_dir
    default_language: Annotated[str, AfterValidator(_language_code)] | None = None
    signature: str = ""  # appended to every mail a player gets under this brand
    complaints: ComplaintsSettings | None = None  # this brand's licence; unset: [complaints]
    routing: dict[str, NonEmptyStr] = Field(default_factory=dict)  # category -> group
    default_group: NonEmptyStr | None = None  # unset: [team] default_group


class Settings(Section):
    support: SupportSettings = Field(default_factory=SupportSettings)
    database: DatabaseSettings
    storage: StorageSettings = Field(default_factory=StorageSettings)
    imap: ImapSettings | None = None
    smtp: SmtpSettings | None = None
    webhooks: WebhooksSettings | None = None
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings, validate_default=True)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    sla: SlaSettings = Field(default_factory=SlaSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    classification: ClassificationSettings = Field(default_factory=ClassificationSettings)
    threading: ThreadingSettings = Field(default_factory=ThreadingSettings)
    responders: RespondersSettings = Field(default_factory=RespondersSettings)
    loops: LoopSettings = Field(default_factory=LoopSettings)
    team: TeamSettings = Field(default_factory=TeamSettings)
    complaints: ComplaintsSettings = Field(default_factory=ComplaintsSettings)
    spam: SpamSettings = Field(default_factory=SpamSettings)
    scan: ScanSettings = Field(default_factory=ScanSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    reports: ReportsSettings = Field(default_factory=ReportsSettings)
    brands: tuple[BrandSettings, ...] = ()
    mailboxes: tuple[MailboxSettings, ...] = ()

    @field_validator("security")
    @classmethod
    def _keys_to_sign_outgoing_mail(cls, security: SecuritySettings,
                                    info: ValidationInfo) -> SecuritySettings:
        # Outgoing Message-IDs and reply tokens are signed; without [smtp] nothing is.
        if info.data.get("smtp") is not None and not security.keys:
            raise AtKey("secret_file", "required when [smtp] is configured: a file of signing "
                        "keys, one per line, newest first (or set TICKETD_SECURITY__SECRET)")
        return security

    @field_validator("complaints")
    @classmethod
    def _hand_over_needs_a_head(cls, complaints: ComplaintsSettings,
                                info: ValidationInfo) -> ComplaintsSettings:
        sla = info.data.get("sla")
        if complaints.deadline_action == "head_of_support" and sla is not None \
                and sla.head_of_support_address is None:
            raise AtKey("deadline_action", '"head_of_support" needs [sla] '
                        "head_of_support_address: the final-response letter is handed there "
                        '(or deadline_action = "send")')
        return complaints

    @field_validator("reports")
    @classmethod
    def _digest_needs_a_reader(cls, reports: ReportsSettings,
                               info: ValidationInfo) -> ReportsSettings:
        sla = info.data.get("sla")
        if reports.digest and sla is not None and sla.head_of_support_address is None:
            raise AtKey("digest", "needs [sla] head_of_support_address: the digest goes there")
        return reports

    @field_validator("brands")
    @classmethod
    def _brands_named_once(cls, brands: tuple[BrandSettings, ...],
                           info: ValidationInfo) -> tuple[BrandSettings, ...]:
        seen: dict[str, int] = {}
        support = info.data.get("support")
        # An address is one brand's: mail to it is ingested and answered as that brand.
        owners: dict[str, str] = {support.address.lower(): "[support]"} if support else {}
        sla = info.data.get("sla")
        for index, brand in enumerate(brands):
            if brand.name == DEFAULT_BRAND:
                raise AtKey(f"{index}.name", f'"{DEFAULT_BRAND}" is the brand of [support]; '
                            "give this brand a name of its own")
            if brand.name in seen:
                raise AtKey(f"{index}.name", f'"{brand.name}" is already the name of '
                            f"brands[{seen[brand.name]}]")
            seen[brand.name] = index
            for key, address in (("address", brand.address),
                                 *(("aliases", alias) for alias in brand.aliases)):
                if address.lower() in owners:
                    raise AtKey(f"{index}.{key}", f'"{address}" is already an address of '
                                f"{owners[address.lower()]}: one address is one brand's")
                owners[address.lower()] = f"brands[{index}]"
            c = brand.complaints
            if c is not None and c.deadline_action == "head_of_support" and sla is not None \
                    and sla.head_of_support_address is None:
                raise AtKey(f"{index}.complaints.deadline_action", '"head_of_support" needs '
                            "[sla] head_of_support_address: the final-response letter is "
                            'handed there (or deadline_action = "send")')
        return brands

    @field_validator("mailboxes")
    @classmethod
    def _mailboxes_of_known_brands(cls, mailboxes: tuple[MailboxSettings, ...],
                                   info: ValidationInfo) -> tuple[MailboxSettings, ...]:
        brands = {DEFAULT_BRAND, *(b.name for b in info.data.get("brands") or ())}
        names: dict[str, int] = {"imap": -1} if info.data.get("imap") is not None else {}
        folders: dict[str, int] = {}
        if info.data.get("imap") is not None:
            folders[_lease_name(info.data["imap"])] = -1
        for index, box in enumerate(mailboxes):
            if box.name == "smtp":
                raise AtKey(f"{index}.name", '"smtp" names the login of [smtp]: give the '
                            "mailbox another name")
            if box.name in names:
                first = "[imap]" if names[box.name] < 0 else f"mailboxes[{names[box.name]}]"
                raise AtKey(f"{index}.name", f'"{box.name}" is already the name of {first}')
            if box.brand not in brands:
                raise AtKey(f"{index}.brand", f'no brand "{box.brand}": name one of '
                            f"{', '.join(sorted(brands))}, or add [[brands]] with "
                            f'name = "{box.brand}"')
            if box.lease_name in folders:
                other = folders[box.lease_name]
                first = "[imap]" if other < 0 else f"mailboxes[{other}]"
                raise AtKey(f"{index}.folder", f"{box.lease_name} is watched by {first} "
                            "already: one folder is one mailbox")
            names[box.name] = folders[box.lease_name] = index
        return mailboxes

    @cached_property
    def all_mailboxes(self) -> tuple[MailboxSettings, ...]:
        """Every mailbox to watch: [imap] (named "imap", of the default brand) first."""
        old = (MailboxSettings(**self.imap.model_dump(), name="imap"),) if self.imap else ()
        return (*old, *self.mailboxes)

    def mailbox(self, name: str) -> MailboxSettings | None:
        return next((box for box in self.all_mailboxes if box.name == name), None)

    def brand(self, name: str) -> BrandSettings | None:
        return next((brand for brand in self.brands if brand.name == name), None)

    @model_validator(mode="before")
    @classmethod
    def _database_url_follows_storage(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        database, storage = data.get("database", {}), data.get("storage", {})
        if isinstance(database, dict) and database.get("url") is None:
            path = storage.get("path", DEFAULT_STORAGE_PATH) if isinstance(storage, dict) else (
                storage.path)
            url = f"sqlite:///{PurePosixPath(path) / 'ticketd.db'}"
            data = {**data, "database": {**database, "url": url}}
        return data


def _lease_name(imap: ImapSettings) -> str:
    return f"{imap.username}@{imap.host}:{imap.port}/{imap.folder}"


# Arrays of tables ([[brands]], [[mailboxes]]): each entry is a table of its own.
TABLE_ARRAYS = ("brands", "mailboxes")


def section_models() -> dict[str, type[Section]]:
    """Each section name with its model, for the environment overrides and the renderer."""
    return {name: next(t for t in (field.annotation, *getattr(field.annotation, "__args__", ()))
                       if isinstance(t, type) and issubclass(t, Section))
            for name, field in Settings.model_fields.items() if name not in TABLE_ARRAYS}
