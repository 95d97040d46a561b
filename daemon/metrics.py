"""Prometheus metrics of the daemon, all declared here, once, on the default registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DELIVERY_ATTEMPTS = Counter(
    "ticketd_delivery_attempts_total",
    "Outgoing mails handed to the SMTP server (each try of each outbox row).",
)
DELIVERIES = Counter(
    "ticketd_deliveries_total",
    "Outcomes of delivery attempts: sent, retry (temporary failure), dead (given up).",
    ["result"],
)
OUTBOX_ROWS = Gauge(
    "ticketd_outbox_rows",
    "Outbox rows by state, as counted at the end of the last outbox pass.",
    ["state"],
)
