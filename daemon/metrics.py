"""Prometheus metrics of the daemon, all declared here, once, on the default registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERY_ATTEMPTS = Counter(
    "ticketd_delivery_attempts_total",
    "Outgoing mails handed to the SMTP server (each try of each outbox row).",
)
DELIVERIES = Counter(
    "ticketd_deliveries_total",
    "Outcomes of delivery attempts: sent, retry (temporary failure), dead (given up).",
    ["result"],
)
WEBHOOK_ATTEMPTS = Counter(
    "ticketd_webhook_attempts_total",
    "Webhooks posted to the platform (each try of each webhook outbox row).",
)
WEBHOOK_DELIVERIES = Counter(
    "ticketd_webhook_deliveries_total",
    "Outcomes of webhook attempts: sent, retry (temporary failure), dead (given up); "
    "ticketd_deliveries_total counts them too, with the mail.",
    ["result"],
)
OUTBOX_ROWS = Gauge(
    "ticketd_outbox_rows",
    "Outbox rows by state, as counted at the end of the last outbox pass.",
    ["state"],
)

INGESTED = Counter(
    "ticketd_messages_ingested_total",
    "Incoming mails by outcome: ticket, follow_up, ignored, quarantined, spam, duplicate.",
    ["outcome"],
)
INGEST_SECONDS = Histogram(
    "ticketd_ingest_seconds",
    "Time to parse, classify, thread and store one incoming mail.",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
QUARANTINED = Counter("ticketd_quarantined_total", "Incoming mails quarantined.")
IMAP_RECONNECTS = Counter("ticketd_imap_reconnects_total", "Reconnections to the IMAP server.")
TICKETS = Gauge("ticketd_tickets", "Tickets by status (every status, 0 when none has it), "
                "counted every few seconds.", ["status"])
OUTBOX_OLDEST_DUE = Gauge(
    "ticketd_outbox_oldest_due_seconds",
    "How long the longest-waiting due outbox row has been due (0 when none is): grows when "
    "no sender takes the outbox's work.",
)
MAILBOX_CONNECTED = Gauge(
    "ticketd_mailbox_connected",
    "1 while this daemon holds a logged-in connection to the mailbox, else 0.",
    ["mailbox"],
)
MAILBOX_LAST_PASS = Gauge(
    "ticketd_mailbox_last_pass_timestamp_seconds",
    "Unix time at which the mailbox was last drained without error (at least every "
    "imap.idle_timeout while connected).",
    ["mailbox"],
)
SCANNER_UNAVAILABLE = Counter(
    "ticketd_scanner_unavailable_total",
    "Mails whose attachments clamd could not scan (unreachable, no verdict): held or stored.",
)
OAUTH_REFRESH_FAILURES = Counter(
    "ticketd_oauth_refresh_failures_total",
    "OAuth 2 token refreshes that gave no token, by mailbox (imap, smtp) and the endpoint's "
    "error (invalid_grant: log in again; network: the endpoint did not answer).",
    ["mailbox", "error"],
)
OAUTH_TOKEN_EXPIRY = Gauge(
    "ticketd_oauth_token_expiry_timestamp_seconds",
    "Unix time at which the mailbox's current OAuth 2 access token expires: an alert on "
    "time() > this means the mailbox is locked out.",
    ["mailbox"],
)
