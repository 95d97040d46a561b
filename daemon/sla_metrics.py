"""Prometheus metrics of the SLA monitor, declared once on the default registry.

Counted after the transaction that recorded the escalation has committed, so that a
rolled-back pass (or the monitor that lost the race for a clock) counts nothing.
"""

from __future__ import annotations

from prometheus_client import Counter

WARNINGS = Counter(
    "ticketd_sla_warnings_total",
    "SLA warnings recorded: a promised time is about to pass (sla.warn_at of it has gone).",
)
BREACHES = Counter(
    "ticketd_sla_breaches_total",
    "SLA breach escalations recorded, by level: 1 when the promised time passed, "
    "2 when sla.level2_after more has passed.",
    ["level"],
)
