"""Building the working parts from settings: explicit objects, no global state."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from config import Settings
from daemon.imap import ImapSource
from daemon.ingest import Ingestor, IngestPolicy
from daemon.safety import screener, spam_policy
from daemon.sla import SlaOptions
from daemon.team import Agent, TeamPolicy
from parsers import DEFAULT_RULES, Limits, Rule
from responders.acks import AckPolicy
from responders.rendering import Templates
from responders.sla import DEFAULT_POLICIES
from storage import db
from storage.blobs import BlobStore
from storage.crypto import MasterKeys
from storage.vault import Vault


@dataclass
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    ingestor: Ingestor

    @property
    def vault(self) -> Vault | None:
        """The master keys, when encryption at rest is on."""
        return db.vault_of_factory(self.sessions)


def build(settings: Settings, *, check_schema: bool = True) -> App:
    engine = db.make_engine(settings.database.url, echo=settings.database.echo)
    if check_schema:
        db.check_schema(engine)
    sessions = db.session_factory(engine, vault(settings))
    blobs = BlobStore(Path(settings.storage.path))
    ingestor = Ingestor(sessions, blobs, policy(settings), screener(settings))
    return App(settings, engine, sessions, blobs, ingestor)


def vault(settings: Settings) -> Vault | None:
    """The master keys of `[privacy] key_file`; None (files stored in clear) without one."""
    keys = settings.privacy.master_keys
    return Vault(MasterKeys.of(keys)) if keys else None


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
        ack=ack_policy(settings),
        agents=frozenset(a.address.lower() for a in settings.team.agents),
        authserv_id=settings.security.authserv_id,
        team=team_policy(settings),
        sla=SlaOptions.from_settings(settings),
        spam=spam_policy(settings),
        rg_group=settings.team.routing.get("self_exclusion", settings.team.default_group),
    )


def team_policy(settings: Settings) -> TeamPolicy | None:
    """Notifications and agents' mail need agents, outgoing mail and signing keys."""
    team = settings.team
    if not team.agents or settings.smtp is None or not settings.security.keys:
        return None
    templates_dir = settings.responders.templates_dir
    return TeamPolicy(
        support_address=settings.support.address,
        support_name=settings.support.name,
        keys=settings.security.keys,
        templates=Templates(str(templates_dir) if templates_dir else None),
        agents={a.address.lower(): Agent(a.address.lower(), a.name, a.groups) for a in team.agents},
        routing=dict(team.routing),
        default_group=team.default_group,
        group_addresses=dict(team.group_addresses),
        comment_address=team.comment_address.lower() if team.comment_address else None,
        agent_auth=team.agent_auth,
        authserv_id=settings.security.authserv_id,
        subject_format=settings.threading.subject_tag,
        dispute_text=settings.responders.dispute_text,
    )


def ack_policy(settings: Settings) -> AckPolicy | None:
    """Acknowledgements are written only where they can be signed and sent."""
    responders = settings.responders
    if not responders.acknowledge or settings.smtp is None:
        return None
    default = DEFAULT_POLICIES["default"]
    urgent = DEFAULT_POLICIES["urgent"]
    policies = {
        **DEFAULT_POLICIES,
        "default": replace(default, first_response=settings.sla.first_response,
                           resolution=settings.sla.resolution),
        "urgent": replace(urgent, first_response=settings.sla.first_response_urgent),
    }
    return AckPolicy(
        support_address=settings.support.address,
        support_name=settings.support.name,
        keys=settings.security.keys,
        templates=Templates(str(responders.templates_dir) if responders.templates_dir else None),
        subject_format=settings.threading.subject_tag,
        sla_policies=policies,
        per_address_10min=responders.auto_replies_per_10min,
        per_address_day=responders.auto_replies_per_day,
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
        junk_folder=imap.junk_folder,
        ca_file=str(imap.ca_file) if imap.ca_file else None,
        timeout=imap.timeout,
        max_bytes=settings.limits.max_message_bytes,
    )
