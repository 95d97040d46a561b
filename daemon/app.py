"""Building the working parts from settings: explicit objects, no global state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from daemon.imap import ImapSource
from daemon.ingest import IngestPolicy, Ingestor
from parsers import DEFAULT_RULES, Limits, Rule
from storage import db
from storage.blobs import BlobStore


@dataclass
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    ingestor: Ingestor


def build(settings: Settings, *, check_schema: bool = True) -> App:
    engine = db.make_engine(settings.database.url, echo=settings.database.echo)
    if check_schema:
        db.check_schema(engine)
    sessions = db.session_factory(engine)
    blobs = BlobStore(Path(settings.storage.path))
    return App(settings, engine, sessions, blobs, Ingestor(sessions, blobs, policy(settings)))


def policy(settings: Settings) -> IngestPolicy:
    limits = Limits(**settings.limits.model_dump())
    custom = settings.classification.rules
    rules = (
        tuple(Rule(r.category, r.priority, tuple(r.keywords)) for r in custom)
        if custom
        else DEFAULT_RULES
    )
    return IngestPolicy(
        support_addresses=frozenset({settings.support.address.lower()}),
        default_language=settings.support.default_language,
        limits=limits,
        rules=rules,
        keys=settings.security.keys,
        subject_tag=settings.threading.subject_tag,
        reopen_window=settings.threading.reopen_window,
        escalation_keywords=settings.threading.escalation_keywords,
    )


def imap_source(settings: Settings) -> ImapSource:
    imap = settings.imap
    if imap is None:
        raise ValueError("no [imap] section in the configuration")
    return ImapSource(
        host=imap.host,
        port=imap.port,
        tls=imap.tls,
        username=imap.username,
        password=imap.password.get_secret_value() if imap.password else None,
        oauth2_token=imap.oauth2_token.get_secret_value() if imap.oauth2_token else None,
        folder=imap.folder,
        processed_folder=imap.processed_folder,
        quarantine_folder=imap.quarantine_folder,
        ca_file=str(imap.ca_file) if imap.ca_file else None,
        timeout=imap.timeout,
        max_bytes=settings.limits.max_message_bytes,
    )
