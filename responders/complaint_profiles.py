"""Regulator profiles: the complaint deadlines and duties of a licence, as data.

A profile says how long the desk has to acknowledge a complaint and to give its final
decision, when the deadline guard reminds staff, whether the deadline may be extended, how
long an ADR entity's enquiry may wait, and who the independent (ADR) body is. The built-in
ones below are the starting point; `[complaints]` in the settings picks one and may override
each number, and names the ADR entity the licence agreement names (per language).

Where the numbers come from (checked against the regulators' and operators' published texts):

* ``ukgc`` - UK Gambling Commission, "Complaints and disputes: procedural, information
  provision and reporting requirements" (LCCP SR code 6.1.1.2) and the licensee guide
  "Timescales for the complaints process": acknowledge within 24 hours where gambling is
  offered round the clock; the whole procedure, escalation included, within 8 weeks of
  receipt (the clock may be paused while the player is asked for information); at the end
  a written final response that names the approved ADR entity ("deadlock letter");
  enquiries from an ADR provider answered within 10 working days.
* ``mga`` - Malta Gaming Authority, ADR Directive (Directive 5 of 2018) under the Gaming
  Player Protection Regulations (S.L. 583.08): the licensee's written procedure must state
  the time frame in which it settles a complaint and name an EU/EEA ADR entity; the MGA
  does not fix the number itself. We take 8 weeks, the same end point as the UKGC's and
  the one the players of EU ADR bodies expect, so a desk licensed in both has one promise;
  an operator whose terms say otherwise sets ``final_deadline``. Acknowledgement: the
  desk's own 24 hours. No extension (the terms state one time frame).
* ``cga`` - Curaçao Gaming Authority, Player Complaints Policy Guidelines under the
  National Ordinance on Games of Chance (LOK, art. 5.3): acknowledge within one week;
  resolve within four weeks, extendable once with written notice and reasons (published
  summaries of version 1.1 give the extension as four weeks); responsible-gambling
  complaints within 1 business day in the operators' published policies (press summaries
  of version 1.1 say five business days: an operator that follows those sets
  ``rg_business_days = 5``); the ADR is free to the player.
* ``none`` - no regulator: complaints are recorded, no deadline, no letter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from types import MappingProxyType

__all__ = ["PROFILES", "AdrEntity", "ComplaintProfile", "profile"]

WEEK = timedelta(weeks=1)


@dataclass(frozen=True)
class AdrEntity:
    """The independent body a player may take an unresolved complaint to, as written in one
    language (a name and postal address may read differently in each)."""

    name: str = ""
    url: str = ""
    address: str = ""

    def __bool__(self) -> bool:
        return bool(self.name)


@dataclass(frozen=True)
class ComplaintProfile:
    name: str = "none"
    ack_within: timedelta | None = None  # acknowledgement deadline, from receipt
    final_within: timedelta | None = None  # final decision deadline, from receipt
    # Reminders to the assignee and the head of support, as time BEFORE the final deadline:
    # an extension moves them with it.
    reminders_before: tuple[timedelta, ...] = ()
    pause_while_waiting: bool = False  # the clock may stop while the player is asked
    extension: timedelta | None = None  # one extension of this length; None: refused
    adr_enquiry_business_days: int | None = None  # an ADR body's enquiry answered within
    rg_business_days: int | None = None  # responsible-gambling complaints decided within
    adr: Mapping[str, AdrEntity] = field(default_factory=dict, compare=False)  # by language
    # The desk's time zone ([sla] timezone): business days are its Monday to Friday, not UTC's.
    timezone: str = "UTC"

    @property
    def regulated(self) -> bool:
        return self.final_within is not None

    def adr_entity(self, language: str) -> AdrEntity:
        """The ADR entity as written in `language`, else in English, else nothing."""
        return self.adr.get(language) or self.adr.get("en") or AdrEntity()


PROFILES: Mapping[str, ComplaintProfile] = MappingProxyType({
    "none": ComplaintProfile(),
    "ukgc": ComplaintProfile(
        name="ukgc", ack_within=timedelta(hours=24), final_within=8 * WEEK,
        reminders_before=(2 * WEEK, WEEK),  # weeks 6 and 7 of 8
        pause_while_waiting=True, adr_enquiry_business_days=10),
    "mga": ComplaintProfile(
        name="mga", ack_within=timedelta(hours=24), final_within=8 * WEEK,
        reminders_before=(2 * WEEK, WEEK)),
    "cga": ComplaintProfile(
        name="cga", ack_within=WEEK, final_within=4 * WEEK,
        reminders_before=(WEEK,),  # week 3 of 4
        extension=4 * WEEK, rg_business_days=1),
})


def profile(name: str, **overrides: object) -> ComplaintProfile:
    """The built-in profile `name` with the given fields replaced (None values are left)."""
    chosen = {key: value for key, value in overrides.items() if value is not None}
    return replace(PROFILES[name], **chosen)  # type: ignore[arg-type]
