"""Building the working parts from settings: explicit objects, no global state."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from daemon import runtime as runtime_mod
from daemon.imap import ImapSource
from daemon.ingest import Ingestor
from daemon.oauth import Keepers
from daemon.outbox import OutboxSender, SenderSetup
from daemon.runtime import Current, Runtime
from daemon.sla import SlaMonitor
from storage import db
from storage.blobs import BlobStore
from storage.crypto import MasterKeys
from storage.vault import Vault


@dataclass
class App:
    """What lives as long as the process (the database, the file store) and the runtime
    value in force, which a reload replaces."""

    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    current: Current
    oauth: Keepers = field(default_factory=Keepers)  # tokens of auth = "oauth2" mailboxes

    @property
    def runtime(self) -> Runtime:
        return self.current.value

    @property
    def settings(self) -> Settings:
        return self.current.value.settings

    @property
    def ingestor(self) -> Ingestor:
        """An ingestor bound to the runtime in force: take one per batch of mail."""
        return self.ingestor_for(None)

    def ingestor_for(self, brand: str | None) -> Ingestor:
        """An ingestor for mail of `brand` (its mailbox's), bound to the runtime in force."""
        value = self.current.value
        return Ingestor(self.sessions, self.blobs, value.ingest_for(brand), value.screener,
                        brands=value.ingests)

    def outbox_sender(self, **options: Any) -> OutboxSender:
        """The outbox sender, reading the transport in force at each pass."""
        if self.runtime.sender is None:
            raise ValueError("no [smtp] section nor [webhooks] in the configuration")
        return OutboxSender.following(self.sessions, self._sender_setup, **options)

    def sla_monitor(self, **options: Any) -> SlaMonitor:
        """The SLA monitor, reading the options and identity in force at each pass."""
        return SlaMonitor(self.sessions, lambda: self.current.value, **options)

    def _sender_setup(self) -> SenderSetup:
        setup = self.current.value.sender
        if setup is None:  # a reload cannot remove both [smtp] and [webhooks] from a sender
            raise ValueError("no [smtp] section nor [webhooks] in the configuration")
        return with_oauth(setup, self.current.value.settings, self.oauth)

    def imap_source(self, mailbox: str = "imap") -> ImapSource:
        """A mailbox of the settings in force ("imap": [imap]; else a [[mailboxes]] name),
        its OAuth tokens from this process's keeper."""
        return imap_source(self.settings, self.oauth, mailbox)

    @property
    def vault(self) -> Vault | None:
        """The master keys, when encryption at rest is on."""
        return db.vault_of_factory(self.sessions)


def build(settings: Settings, *, check_schema: bool = True,
          source: str = "configuration") -> App:
    """The application of `settings`; ConfigError when the runtime value cannot be built."""
    value = runtime_mod.build(settings, source)
    keys = vault(settings)
    engine = db.make_engine(settings.database.url, echo=settings.database.echo,
                            masters=keys.masters if keys else None,
                            held=len(settings.all_mailboxes))  # a lease lock per mailbox
    if check_schema:
        db.check_schema(engine)
    sessions = db.session_factory(engine, keys)
    blobs = BlobStore(Path(settings.storage.path))
    return App(engine, sessions, blobs, Current(value))


def vault(settings: Settings) -> Vault | None:
    """The master keys of `[privacy] key_file`; None (files stored in clear) without one."""
    keys = settings.privacy.master_keys
    return Vault(MasterKeys.of(keys)) if keys else None


def with_oauth(setup: SenderSetup, settings: Settings, keepers: Keepers) -> SenderSetup:
    """The sender setup whose transport takes a fresh token per connection (auth = "oauth2")."""
    if settings.smtp is None or settings.smtp.auth != "oauth2":
        return setup
    transport = replace(setup.transport, oauth2_tokens=keepers.keeper(settings, "smtp"))
    return replace(setup, transport=transport)


def imap_source(settings: Settings, keepers: Keepers | None = None,
                mailbox: str = "imap") -> ImapSource:
    imap = settings.mailbox(mailbox)
    if imap is None:
        raise ValueError("no [imap] section in the configuration" if mailbox == "imap" else
                         f"no mailbox {mailbox!r} in the configuration")
    refreshing = imap.auth == "oauth2"
    tokens = (keepers or Keepers()).keeper(settings, mailbox) if refreshing else None
    return ImapSource(
        host=imap.host,
        port=imap.port,
        tls=imap.tls,
        username=imap.username,
        password=imap.password.get_secret_value()
        if imap.password and imap.auth == "password" else None,
        oauth2_token=imap.oauth2_token.get_secret_value()
        if imap.oauth2_token and not refreshing else None,
        oauth2_tokens=tokens,
        oauth2_mechanism=imap.oauth2_mechanism,
        folder=imap.folder,
        processed_folder=imap.processed_folder,
        quarantine_folder=imap.quarantine_folder,
        junk_folder=imap.junk_folder,
        ca_file=str(imap.ca_file) if imap.ca_file else None,
        timeout=imap.timeout,
        max_bytes=settings.limits.max_message_bytes,
    )
