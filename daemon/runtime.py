"""The runtime value: everything the settings decide, built once, read by every loop.

`build(settings)` turns checked settings into one immutable `Runtime`: who the desk is
(one `Identity` per brand), the team and its staff, the SLA options, the ingest and
acknowledgement policies, and the SMTP transport with its credentials as read at load. The
daemon keeps the value in force in a `Current`; each loop reads it once at the start of a
unit of work (a batch of mail, an outbox pass, an SLA pass), and SIGHUP builds a new one and
swaps it whole. A build that fails leaves the old value in force.

Brands: [support] is the brand "default", each [[brands]] entry one more; `Runtime.brands`
maps a brand's name to its identity, and `Runtime.brand(name)` falls back on the default.
Mail coming in is ingested under its mailbox's brand (`Runtime.ingest_for`); mail going out
about a ticket speaks as the ticket's brand.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from jinja2 import TemplateError, TemplateSyntaxError

from config import ConfigError, Settings
from config.schema import BrandSettings, ComplaintsSettings
from daemon.ingest import IngestPolicy
from daemon.outbox import SenderSetup
from daemon.safety import Screener, screener, spam_policy
from daemon.sla import SlaOptions
from daemon.team import STAFF_ROLES, Agent, TeamPolicy
from daemon.webhooks import UnusableCaFile, events_of
from parsers import DEFAULT_RULES, Limits, Rule
from responders.acks import AckPolicy
from responders.complaint_profiles import AdrEntity, ComplaintProfile, profile
from responders.identity import DEFAULT_BRAND, Identity
from responders.loops import LoopPolicy
from responders.rendering import Templates
from responders.sla import DEFAULT_POLICIES

__all__ = ["Current", "Runtime", "build"]


@dataclass(frozen=True)
class Runtime:
    settings: Settings  # as loaded: intervals, limits, the mailbox's server
    brands: Mapping[str, Identity]  # brand name -> who the desk is under that brand
    default_brand: str
    ingest: IngestPolicy  # what a mail coming in meets
    sla: SlaOptions  # clocks and escalation recipients
    team: TeamPolicy | None  # agents and staff; None: no team mail at all
    ack: AckPolicy | None  # None: no acknowledgements
    sender: SenderSetup | None  # SMTP and webhook transports; None: neither, nothing is sent
    screener: Screener  # the malware scan ([scan]: clamd's address, hold or store)
    ingests: Mapping[str, IngestPolicy] = field(default_factory=dict)  # brand -> its policy

    @property
    def identity(self) -> Identity:
        """The default brand's identity: the desk's own mail (escalations, reports)."""
        return self.brands[self.default_brand]

    def brand(self, name: str | None) -> Identity:
        """A brand's identity; an unknown or missing name is the default brand."""
        return self.brands.get(name or self.default_brand) or self.identity

    def ingest_for(self, brand: str | None) -> IngestPolicy:
        """What mail coming in under `brand` (its mailbox's) meets; the default's else."""
        return self.ingests.get(brand or self.default_brand) or self.ingest


def build(settings: Settings, source: str = "configuration") -> Runtime:
    """The runtime value of `settings`; ConfigError (naming `source`, the key and the
    reason) when something the settings name cannot be used, e.g. a broken template."""
    identity = _identity(settings, source)
    brands = MappingProxyType({identity.brand: identity, **{
        b.name: _brand_identity(settings, b, index, identity, source)
        for index, b in enumerate(settings.brands)}})
    sla = SlaOptions.from_settings(settings)
    team = team_policy(settings, identity, brands)
    ack = ack_policy(settings, identity)
    try:
        sender = SenderSetup.from_settings(settings) \
            if settings.smtp is not None or settings.webhooks is not None else None
    except UnusableCaFile as err:
        raise ConfigError(source, "webhooks.ca_file", str(err)) from None
    except ValueError as err:
        raise ConfigError(source, "smtp", str(err)) from None
    loops = loop_policy(settings, identity)
    team = replace(team, loops=loops) if team is not None else None
    ack = replace(ack, loops=loops) if ack is not None else None
    ours = frozenset().union(*(b.addresses for b in brands.values()))
    ingests = MappingProxyType({
        name: replace(ingest_policy(settings, brand, team and team.as_brand(name),
                                    ack and replace(ack, identity=brand,
                                                    loops=loops.under(brand)), sla),
                      loops=loops, brand=name, support_addresses=ours)
        for name, brand in brands.items()})
    return Runtime(settings, brands, identity.brand, ingests[identity.brand], sla, team, ack,
                   sender, screener(settings), ingests)


def _templates(folder: object, language: str, source: str, key: str) -> Templates:
    try:
        templates = Templates(str(folder) if folder else None, frozen=True,
                              default_language=language)
        templates.check()
    except TemplateSyntaxError as err:
        where = f"{err.name or '?'} line {err.lineno}"
        raise ConfigError(source, key, f"template {where}: {err.message}") from None
    except (TemplateError, OSError, UnicodeDecodeError) as err:
        raise ConfigError(source, key,
                          f"templates unusable: {type(err).__name__}: {err}") from None
    return templates


def _brand_identity(settings: Settings, brand: BrandSettings, index: int, desk: Identity,
                    source: str) -> Identity:
    """A [[brands]] entry as an identity: what it leaves unset is the desk's."""
    language = brand.default_language or desk.language
    folder = brand.templates_dir or settings.responders.templates_dir
    key = f"brands[{index}].templates_dir" if brand.templates_dir else "responders.templates_dir"
    c = brand.complaints
    return replace(
        desk, address=brand.address, name=brand.display_name, brand=brand.name,
        templates=_templates(folder, language, source, key), language=language,
        aliases=frozenset(a.lower() for a in brand.aliases), signature=brand.signature,
        complaints=complaint_profile(c, settings.sla.timezone) if c else desk.complaints,
        adr_addresses=frozenset(a.lower() for a in c.adr_addresses) if c else
        desk.adr_addresses,
        deadline_action=c.deadline_action if c else desk.deadline_action,
        # [responders] dispute_text speaks of the desk's ADR entity: a brand with its own
        # [brands.complaints] names its own entity, from the templates.
        dispute_text="" if c else desk.dispute_text,
        routing=MappingProxyType(dict(brand.routing)), default_group=brand.default_group,
    )


def _identity(settings: Settings, source: str) -> Identity:
    templates = _templates(settings.responders.templates_dir, settings.support.default_language,
                           source, "responders.templates_dir")
    support = settings.support
    return Identity(
        address=support.address, name=support.name, keys=settings.security.keys,
        templates=templates, subject_format=settings.threading.subject_tag,
        language=support.default_language, dispute_text=settings.responders.dispute_text,
        brand=DEFAULT_BRAND,
        complaints=complaint_profile(settings.complaints, settings.sla.timezone),
        adr_addresses=frozenset(a.lower() for a in settings.complaints.adr_addresses),
        deadline_action=settings.complaints.deadline_action,
    )


def complaint_profile(c: ComplaintsSettings, timezone: str = "UTC") -> ComplaintProfile:
    """A [complaints] profile with its overrides and the ADR entity in each language;
    business days counted in the desk's `timezone` ([sla] timezone)."""
    english = AdrEntity(c.adr_entity or "", c.adr_url or "", c.adr_address or "")
    adr = {"en": english} if english else {}
    for language, local in c.adr_translations.items():
        adr[language] = AdrEntity(local.entity or english.name, local.url or english.url,
                                  local.address or english.address)
    return profile(c.profile, ack_within=c.ack_deadline, final_within=c.final_deadline,
                   reminders_before=c.reminders_before, extension=c.extension,
                   adr_enquiry_business_days=c.adr_enquiry_business_days,
                   rg_business_days=c.rg_business_days, adr=MappingProxyType(adr),
                   timezone=timezone)


def ingest_policy(settings: Settings, identity: Identity, team: TeamPolicy | None,
                  ack: AckPolicy | None, sla: SlaOptions) -> IngestPolicy:
    custom = settings.classification.rules
    rules = (
        tuple(Rule(r.category, r.priority, tuple(r.keywords)) for r in custom)
        if custom
        else DEFAULT_RULES
    )
    members = frozenset((*team.agents, *team.staff)) if team else frozenset(
        a.address.lower() for a in settings.team.agents)
    return IngestPolicy(
        support_addresses=identity.addresses,
        default_language=identity.language,
        # ours and any the operator added templates for: a player is answered in what we write
        languages=tuple(sorted(identity.templates.languages())),
        limits=Limits(**settings.limits.model_dump()),
        rules=rules,
        keys=identity.keys,
        subject_tag=identity.subject_format,
        reopen_window=settings.threading.reopen_window,
        escalation_keywords=settings.threading.escalation_keywords,
        ack=ack,
        agents=members,
        authserv_id=settings.security.authserv_id,
        team=team,
        sla=sla,
        spam=spam_policy(settings),
        rg_group=identity.routing.get("self_exclusion") or settings.team.routing.get(
            "self_exclusion") or identity.default_group or settings.team.default_group,
        webhooks=events_of(settings.webhooks, settings.support.address),
        complaints=identity.complaints, adr_addresses=identity.adr_addresses,
    )


def loop_policy(settings: Settings, identity: Identity) -> LoopPolicy:
    """The loop limits; a stopped ticket is told to operations, else to the staff who
    answer for the desk (team lead, head of support), else to the agents."""
    loops, team = settings.loops, settings.team
    agents = tuple(a.address.lower() for a in team.agents)
    members = tuple(staff(settings))
    leads = tuple(a for a in (settings.sla.team_lead_address, settings.sla.head_of_support_address)
                  if a)
    ops = settings.outbox.ops_address
    summary_to = (ops,) if ops else leads or agents
    recipients = tuple(dict.fromkeys(a.lower() for a in summary_to))
    return LoopPolicy(
        per_ticket=loops.per_ticket, per_ticket_window=loops.per_ticket_window,
        per_ticket_day=loops.per_ticket_day, per_ticket_day_window=loops.per_ticket_day_window,
        per_address=loops.per_address, per_address_window=loops.per_address_window,
        per_team_address=loops.per_team_address,
        team_addresses=frozenset((*agents, *members, *(a.lower() for a in leads),
                                  *(a.lower() for a in team.group_addresses.values()),
                                  *((ops.lower(),) if ops else ()))),
        responder_seconds=loops.responder_seconds, repeat_window=loops.repeat_window,
        notify_every=loops.notify_every, held_notices_per_hour=loops.held_notices_per_hour,
        summary_to=recipients, summary_from=identity.address,
        summary_languages=tuple((a, language) for a in recipients
                                if (language := agent_language(settings, a))),
        desk=identity,
    )


def agent_language(settings: Settings, address: str) -> str | None:
    """The language an agent reads staff mail of their own in: the first of the languages
    they were configured with; None for anyone else, and for an agent configured with none
    (who reads the desk's language, like every staff mail)."""
    agent = settings.team.agent(address)
    if agent is None or "languages" not in agent.model_fields_set or not agent.languages:
        return None
    return agent.languages[0]


def staff(settings: Settings) -> dict[str, Agent]:
    """The SLA recipients who are not agents, by lower-case address, named by their role."""
    agents = {a.address.lower() for a in settings.team.agents}
    found: dict[str, Agent] = {}
    for key, role in STAFF_ROLES.items():
        address = getattr(settings.sla, key)
        if address and address.lower() not in agents:
            found.setdefault(address.lower(), Agent(address.lower(), role))
    return found


def team_policy(settings: Settings, identity: Identity,
                brands: Mapping[str, Identity] | None = None) -> TeamPolicy | None:
    """Notifications and agents' mail need agents or staff, outgoing mail and signing keys."""
    team = settings.team
    members = staff(settings)
    if not (team.agents or members) or settings.smtp is None or not identity.keys:
        return None
    return TeamPolicy(
        identity=identity,
        agents={a.address.lower(): Agent(a.address.lower(), a.name, a.groups, a.languages)
                for a in team.agents},
        staff=members,
        routing=dict(team.routing),
        default_group=team.default_group,
        group_addresses=dict(team.group_addresses),
        comment_address=team.comment_address.lower() if team.comment_address else None,
        agent_auth=team.agent_auth,
        authserv_id=settings.security.authserv_id,
        brands=MappingProxyType(dict(brands or {identity.brand: identity})),
        language=identity.language,
    )


def ack_policy(settings: Settings, identity: Identity) -> AckPolicy | None:
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
        identity=identity,
        sla_policies=policies,
        per_address_10min=responders.auto_replies_per_10min,
        per_address_day=responders.auto_replies_per_day,
    )


class Current:
    """The runtime in force. Readers take `.value` once per unit of work; `swap` replaces it
    whole (one reference assignment, so a reader sees the old value or the new, never a mix).
    `generation` counts the values put in force, for logs and tests."""

    def __init__(self, value: Runtime) -> None:
        self._value = value
        self._lock = threading.Lock()  # two reloads at once: the later one wins, whole
        self.generation = 1

    @property
    def value(self) -> Runtime:
        return self._value

    def swap(self, value: Runtime) -> Runtime:
        """Put `value` in force; the one it replaces."""
        with self._lock:
            old, self._value = self._value, value
            self.generation += 1
            return old
