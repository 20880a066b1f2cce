"""The process's own Prometheus counters: what this process did (requests, ingested events,
steps, deliveries, deferrals). Gauges that need the database are read at scrape time instead
(`services/ops.py`), so every process reports the same truth about shared state."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "conveyor_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "conveyor_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_INGESTED = Counter(
    "conveyor_events_ingested",
    "Tracking calls (identify, track, page, ...) accepted into the event log, by type.",
    ["type"],
)
SDK_METRICS = Counter(
    "conveyor_sdk_metrics",
    "Counters analytics.js reports about itself (POST /v1/m), errors apart; not stored.",
    ["kind"],
)
STEPS = Counter(
    "conveyor_steps",
    "Automation steps executed by the engine, by node type and outcome.",
    ["node_type", "outcome"],
)
RUNS_CLAIMED = Counter(
    "conveyor_runs_claimed",
    "Runs whose timer was due, claimed by this worker to advance.",
)
RUNS_ADVANCED = Counter(
    "conveyor_runs_advanced",
    "Runs advanced by the engine, by why: entered (a trigger or an automation let it in),"
    " due (its timer came), woken (an event it waits on), released (let out of a queue).",
    ["why"],
)
DELIVERIES = Counter(
    "conveyor_deliveries",
    "Delivery attempts recorded, by channel and outcome (sent, retry, failed, dead, skipped).",
    ["channel", "outcome"],
)
PROVIDER_SECONDS = Histogram(
    "conveyor_delivery_provider_seconds",
    "Time a provider took to take (or refuse) one message, by channel and result (ok, error).",
    ["channel", "result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OUTBOX_WAIT_SECONDS = Histogram(
    "conveyor_outbox_wait_seconds",
    "Time a sent message waited in the outbox: from when it could go (queued, or the moment a"
    " send policy allowed) to when the provider took it, by channel.",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
DEFERRALS = Counter(
    "conveyor_send_policy_holds",
    "Messages the send policy held back, by channel and action (deferred or skipped).",
    ["channel", "action"],
)


def count(counter: Counter, keys: Iterable[tuple[str, ...]]) -> None:
    """Increment `counter` once per label tuple in `keys` (grouped, one call per label set)."""
    tally: dict[tuple[str, ...], int] = {}
    for key in keys:
        tally[key] = tally.get(key, 0) + 1
    for key, n in tally.items():
        counter.labels(*key).inc(n)
