"""Prometheus metrics of the blocklist, on ``prometheus_client``'s default registry.

The streaming job registers its own metrics on the same default registry, and ``GET /metrics``
(``streaming.blocklist.service``) exposes that registry plus gauges read from the database at scrape time.
"""

from __future__ import annotations

from prometheus_client import Counter

DECISIONS = Counter(
    "simguard_policy_decisions",
    "Scored rows at or above their review threshold, by fraud type and policy action",
    ["fraud_type", "action"],
)
ENTRIES = Counter(
    "simguard_blocklist_entries",
    "New blocklist versions, by action and who decided",
    ["action", "decided_by"],
)
REPLAYED = Counter(
    "simguard_blocklist_replayed_decisions",
    "Decisions skipped because their idempotency key was applied before (replayed micro-batches)",
)
KAFKA_PUBLISHED = Counter(
    "simguard_blocklist_kafka_published",
    "Entries sent to an operator's compacted topic and acknowledged",
    ["operator"],
)
WEBHOOK_ATTEMPTS = Counter(
    "simguard_blocklist_webhook_attempts",
    "Webhook POSTs by operator and result (delivered, retry, failed)",
    ["operator", "result"],
)
