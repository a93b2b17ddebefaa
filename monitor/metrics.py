"""Prometheus metrics: what the daemon counts, in one dedicated registry.

No I/O of its own (the process collector reads /proc when scraped). The only module importing
prometheus_client; the rest of the code calls the plain `record_*` functions, and health.py
serves `exposition()` on `/metrics`. Counters live for the process: a reload keeps them, and a
feed removed from the config keeps its last values until restart (the Prometheus convention).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Literal, cast, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from monitor.models import FeedPlan

PollResult = Literal["ok", "not_modified", "error", "gone"]
AlertStatus = Literal["queued", "sent", "failed_attempt", "failed"]

# The text format generate_latest() writes (prometheus_client's own fallback content type).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# `*_created` series double the output and nobody graphs them. (Untyped in prometheus_client.)
cast(Callable[[], None], disable_created_metrics)()

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

_POLLS = Counter(
    "monitor_polls",
    "Feed polls by outcome: ok (new document), not_modified "
    "(HTTP 304 or the same body), error, gone (HTTP 410).",
    ["feed", "result"],
    registry=REGISTRY,
)
_FETCH_ERRORS = Counter(
    "monitor_fetch_errors",
    "Fetches that got no usable response (network error, timeout, HTTP error status).",
    ["feed"],
    registry=REGISTRY,
)
_FETCH_SECONDS = Histogram(
    "monitor_fetch_seconds",
    "Time of one fetch, redirects included.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
_ENTRIES_NEW = Counter(
    "monitor_entries_new",
    "Entries seen for the first time (a new feed's silent baseline included).",
    ["feed"],
    registry=REGISTRY,
)
_MATCHES = Counter(
    "monitor_matches", "New entries a watch rule matched.", ["rule"], registry=REGISTRY
)
_ALERTS = Counter(
    "monitor_alerts",
    "Alert rows by event: queued (created in the outbox), sent, "
    "failed_attempt (the channel refused; retried later), failed (given up after "
    "give_up_after).",
    ["channel", "status"],
    registry=REGISTRY,
)
_LAST_PROGRESS = Gauge(
    "monitor_last_progress_timestamp_seconds",
    "Unix time the scheduler last finished a tick.",
    registry=REGISTRY,
)

PENDING_NAME = "monitor_alerts_pending"
PENDING_HELP = "Alerts queued or held per channel, read from the database at scrape time."


def declare(*, feeds: Iterable[str], rules: Iterable[str], channels: Iterable[str]) -> None:
    """Create every series at zero, so `increase()` also sees the first event of each kind.
    Call at start and after a reload with the configured names."""
    for feed in feeds:
        for result in get_args(PollResult):
            _POLLS.labels(feed=feed, result=result)
        _FETCH_ERRORS.labels(feed=feed)
        _ENTRIES_NEW.labels(feed=feed)
    for rule in rules:
        _MATCHES.labels(rule=rule)
    for channel in channels:
        for status in get_args(AlertStatus):
            _ALERTS.labels(channel=channel, status=status)


def record_fetch(feed: str, seconds: float, *, failed: bool) -> None:
    """One finished fetch (not one abandoned at shutdown)."""
    _FETCH_SECONDS.observe(seconds)
    if failed:
        _FETCH_ERRORS.labels(feed=feed).inc()


def record_poll(feed: str, result: PollResult) -> None:
    _POLLS.labels(feed=feed, result=result).inc()


def record_new_entries(feed: str, count: int) -> None:
    if count:
        _ENTRIES_NEW.labels(feed=feed).inc(count)


def record_match(rule: str) -> None:
    _MATCHES.labels(rule=rule).inc()


def record_alert(channel: str, status: AlertStatus, count: int = 1) -> None:
    if count:
        _ALERTS.labels(channel=channel, status=status).inc(count)


def record_progress(at: datetime) -> None:
    _LAST_PROGRESS.set(at.timestamp())


def poll_result(plan: FeedPlan) -> PollResult:
    """What one stored poll came to, from its plan."""
    if plan.state.state == "gone":
        return "gone"
    if plan.state.state == "failing":
        return "error"
    return "ok" if plan.document_changed else "not_modified"


def record_plan(plan: FeedPlan) -> None:
    """A poll once stored: its outcome, its new entries and the rules they matched. Queued
    alerts are counted where the outbox rows are created (`record_alert(..., "queued")`),
    because a row duplicating an earlier (story, rule, channel) is not created."""
    feed = plan.state.name
    record_poll(feed, poll_result(plan))
    record_new_entries(feed, len(plan.new_articles))
    for new in plan.new_articles:
        for rule in dict.fromkeys(m.rule for m in new.matches):
            record_match(rule)


def exposition(pending: Mapping[str, int] | None = None) -> bytes:
    """Every metric in the Prometheus text format (CONTENT_TYPE); `pending` maps each channel to
    its queued and held alerts, as just read from the database."""
    text = generate_latest(REGISTRY)
    if pending is None:
        return text
    scrape = CollectorRegistry(auto_describe=True)
    gauge = Gauge(PENDING_NAME, PENDING_HELP, ["channel"], registry=scrape)
    for channel, count in sorted(pending.items()):
        gauge.labels(channel=channel).set(count)
    return text + generate_latest(scrape)
