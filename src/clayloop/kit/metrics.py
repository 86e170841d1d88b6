"""Prometheus metrics: every stall in the loop shows up as a number."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CALLBACKS = Counter(
    "clayloop_callbacks_total", "Callbacks received, by outcome and kind", ["outcome", "kind"]
)
CALLBACK_WRITES = Counter(
    "clayloop_callback_writes_total",
    "Applied callbacks by how they were written: unlocked (a read, then a group-committed "
    "write, PostgreSQL) or "
    "locked (a transaction holding the lead's lock: SQLite, callbacks without a request_id, "
    "and the retry when the lead changed or was busy between read and write)",
    ["path"],
)
CALLBACK_WRITE_BATCH = Histogram(
    "clayloop_callback_write_batch_size",
    "Callbacks per group-committed write statement (PostgreSQL): above 1 under load",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
SENDS = Counter(
    "clayloop_sends_total", "Rows POSTed to Clay table webhooks, by answer", ["kind", "result"]
)
REQUESTS_BY_STATUS = Gauge(
    "clayloop_requests",
    "Enrichment requests by kind, status and reason",
    ["kind", "status", "reason"],
)
OLDEST_QUEUED_SECONDS = Gauge(
    "clayloop_oldest_queued_seconds", "Age of the oldest queued request, by kind", ["kind"]
)
OPEN_ALERTS = Gauge("clayloop_open_alerts", "Open alerts, by code", ["code"])
